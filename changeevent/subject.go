package changeevent

import (
	"fmt"
	"strings"
)

// SubjectPrefix is the root of every change-event subject.
const SubjectPrefix = "music.cdc"

// Subject is the NATS subject of site's changes to db.table: music.cdc.<site>.<db>.<table>.
// Names are escaped so that any identifier makes exactly one subject token.
func Subject(site, db, table string) string {
	return fmt.Sprintf("%s.%s.%s.%s", SubjectPrefix, Token(site), Token(db), Token(table))
}

// SiteSubjects matches every subject of one site.
func SiteSubjects(site string) string { return SubjectPrefix + "." + Token(site) + ".>" }

// StreamName is the JetStream stream holding one site's changes.
func StreamName(site string) string { return "MUSIC_CDC_" + strings.ToUpper(Token(site)) }

// MsgID is the JetStream message id of the row at index row of the transaction gtid at
// site; a re-publish of the same row is dropped by the stream's duplicate window.
func MsgID(site, gtid string, row int) string { return fmt.Sprintf("%s:%s:%d", site, gtid, row) }

// Token escapes a name into one subject token: letters, digits, '_' and '-' stay, every
// other byte becomes %XX (so '.', '*', '>', spaces and '%' itself cannot split or widen
// a subject).
func Token(name string) string {
	var b strings.Builder
	for i := 0; i < len(name); i++ {
		c := name[i]
		if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "%%%02X", c)
		}
	}
	return b.String()
}
