package changeevent_test

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"math/rand"
	"testing"

	"github.com/music-coord/music/changeevent"
	"github.com/music-coord/music/internal/testenv"
)

// TestCollationKeyMatchesServer compares CollationKey equality with MariaDB's own
// comparison of the same values under each supported collation, for hand-picked and
// random pairs.
func TestCollationKeyMatchesServer(t *testing.T) {
	t.Parallel()
	site := testenv.Sites(t)[0]
	db := site.Open(t, "")
	colls := []changeevent.Column{
		{Charset: "utf8mb4", Collation: "utf8mb4_general_ci"},
		{Charset: "utf8mb4", Collation: "utf8mb4_unicode_ci"},
		{Charset: "utf8mb4", Collation: "utf8mb4_unicode_nopad_ci"},
		{Charset: "utf8mb4", Collation: "utf8mb4_bin"},
		{Charset: "utf8mb4", Collation: "utf8mb4_nopad_bin"},
		{Charset: "utf8mb3", Collation: "utf8mb3_general_ci"},
		{Charset: "latin1", Collation: "latin1_swedish_ci"},
		{Charset: "latin1", Collation: "latin1_german2_ci"},
		{Charset: "latin1", Collation: "latin1_bin"},
		{Charset: "latin2", Collation: "latin2_general_ci"},
		{Charset: "koi8r", Collation: "koi8r_general_ci"},
	}
	fixed := []string{"a", "A", "á", "Á", "a ", "a  ", "a\t", "ß", "ss", "s", "S", "🎵", "🎶", "a\x00b", "ab", "", " ", "é", "e", "E",
		"Straße", "STRASSE", "ä", "ae", "Ä", "ø", "o", "ж", "Ж", "\u00a0", "a\u00a0"}
	letters := []rune("aAáÁbBßsSeéÉ  \x00zZøØäÄæÆ")
	rng := rand.New(rand.NewSource(1))
	for _, c := range colls {
		vals := append([]string{}, fixed...)
		for range 30 {
			n := rng.Intn(4)
			r := make([]rune, n)
			for i := range r {
				r[i] = letters[rng.Intn(len(letters))]
			}
			vals = append(vals, string(r))
		}
		var usable []string
		for _, v := range vals {
			if _, err := changeevent.EncodeText(c.Charset, v); err == nil && (c.Charset != "utf8mb3" || !hasSupplementary(v)) {
				usable = append(usable, v)
			}
		}
		if !changeevent.CollationSupported(changeevent.Column{Charset: c.Charset, Collation: c.Collation}) {
			t.Errorf("%s not supported", c.Collation)
		}
		for i, a := range usable {
			for _, b := range usable[i:] {
				var eq bool
				q := fmt.Sprintf("SELECT CONVERT(? USING %s) COLLATE %s = CONVERT(? USING %s) COLLATE %s", c.Charset, c.Collation, c.Charset, c.Collation)
				if err := db.QueryRow(q, a, b).Scan(&eq); err != nil {
					t.Fatal(err)
				}
				ka, kb := changeevent.CollationKey(c, a), changeevent.CollationKey(c, b)
				got := fmt.Sprintf("%x", ka) == fmt.Sprintf("%x", kb)
				if got != eq {
					t.Errorf("%s: %q vs %q: MariaDB equal=%v, keys %x %x", c.Collation, a, b, eq, ka, kb)
				}
			}
		}
	}
}

func hasSupplementary(s string) bool {
	for _, r := range s {
		if r > 0xFFFF {
			return true
		}
	}
	return false
}

// TestCharsetTablesMatchServer checks that every byte of each single-byte text charset
// decodes to the UTF-8 MariaDB converts it to, and that MariaDB converts that UTF-8 back to
// the same byte.
func TestCharsetTablesMatchServer(t *testing.T) {
	t.Parallel()
	db := testenv.Sites(t)[0].Open(t, "")
	for _, cs := range []string{"cp850", "cp852", "cp866", "keybcs2", "koi8r", "koi8u", "latin1", "latin2", "latin5", "latin7", "macce", "macroman", "utf16", "utf16le"} {
		if !changeevent.TextCharset(cs) {
			t.Errorf("%s is not a text charset", cs)
		}
		var all []byte
		if cs == "utf16" || cs == "utf16le" {
			all, _ = changeevent.EncodeText(cs, "héllo 🎵 ж\u0081")
		} else {
			for i := range 256 {
				all = append(all, byte(i))
			}
		}
		s, err := changeevent.DecodeText(cs, all)
		if err != nil {
			t.Fatal(err)
		}
		var server string
		var back []byte
		q := fmt.Sprintf("SELECT CONVERT(CONVERT(UNHEX(?) USING %s) USING utf8mb4), CAST(CONVERT(CONVERT(CONVERT(UNHEX(?) USING %s) USING utf8mb4) USING %s) AS BINARY)", cs, cs, cs)
		if err := db.QueryRow(q, hex.EncodeToString(all), hex.EncodeToString(all)).Scan(&server, &back); err != nil {
			t.Fatal(err)
		}
		if server != s {
			t.Errorf("%s: Go decodes %q, MariaDB %q", cs, s, server)
		}
		if !bytes.Equal(back, all) {
			t.Errorf("%s: MariaDB's round trip %x, want %x", cs, back, all)
		}
		enc, err := changeevent.EncodeText(cs, s)
		if err != nil || !bytes.Equal(enc, all) {
			t.Errorf("%s: EncodeText %x %v", cs, enc, err)
		}
	}
	for _, cs := range []string{"ascii", "sjis", "big5", "ucs2", "utf32", "cp1250", "tis620", "swe7"} {
		if changeevent.TextCharset(cs) {
			t.Errorf("%s should be carried as bytes", cs)
		}
	}
}
