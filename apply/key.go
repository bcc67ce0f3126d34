package apply

import (
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/music-coord/music/changeevent"
)

// RowChange is the effect of one event on one primary key: the row at Key becomes Image,
// or disappears when Image is nil. An update that changes the primary key is two changes:
// a delete of the old key and a write of the new one.
type RowChange struct {
	Event *changeevent.Event
	Key   string          // canonical primary key, see EncodeKey
	Image changeevent.Row // nil for a delete
}

// Changes returns the row changes of a row event, in the order to apply them.
func Changes(e *changeevent.Event) ([]RowChange, error) {
	pk := PKColumns(e.Columns)
	if len(pk) == 0 {
		return nil, fmt.Errorf("%w: table %s.%s has no primary key", ErrRefused, e.Source.DB, e.Source.Table)
	}
	switch e.Op {
	case changeevent.OpCreate, changeevent.OpRead:
		k, err := EncodeKey(pk, e.After)
		return []RowChange{{Event: e, Key: k, Image: e.After}}, err
	case changeevent.OpDelete:
		k, err := EncodeKey(pk, e.Before)
		return []RowChange{{Event: e, Key: k}}, err
	case changeevent.OpUpdate:
		old, err := EncodeKey(pk, e.Before)
		if err != nil {
			return nil, err
		}
		k, err := EncodeKey(pk, e.After)
		if err != nil {
			return nil, err
		}
		if old == k {
			return []RowChange{{Event: e, Key: k, Image: e.After}}, nil
		}
		return []RowChange{{Event: e, Key: old}, {Event: e, Key: k, Image: e.After}}, nil
	}
	return nil, fmt.Errorf("%w: op %q is not a row change", ErrMalformed, e.Op)
}

// PKColumns returns the primary key columns in table order.
func PKColumns(cols []changeevent.Column) []changeevent.Column {
	var pk []changeevent.Column
	for _, c := range cols {
		if c.PK {
			pk = append(pk, c)
		}
	}
	return pk
}

// EncodeKey encodes the primary key values of row canonically, the same at every site:
// a JSON-like array of integers, floats, quoted strings, 0x-hex bytes and w-hex collation
// weights. Text key columns are encoded by their collation's identity
// (changeevent.CollationKey): values MariaDB holds equal ('a' and 'A' under a _ci
// collation, trailing spaces under PAD SPACE) encode equal, so row_versions and the MUSIC
// store see one row where MariaDB does. Such a column encodes as w"<hex weights>"; exact
// collations (binary, *_nopad_bin) and unsupported ones keep the value itself (PAD SPACE
// _bin collations without trailing spaces).
func EncodeKey(pk []changeevent.Column, row changeevent.Row) (string, error) {
	var b strings.Builder
	b.WriteByte('[')
	for i, c := range pk {
		if i > 0 {
			b.WriteByte(',')
		}
		v, ok := row[c.Name]
		if !ok {
			return "", fmt.Errorf("%w: row lacks primary key column %q", ErrMalformed, c.Name)
		}
		b.WriteString(encodeValue(changeevent.CollationKey(c, v)))
	}
	b.WriteByte(']')
	return b.String(), nil
}

func encodeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case int64:
		return strconv.FormatInt(x, 10)
	case uint64:
		return strconv.FormatUint(x, 10)
	case float32:
		return strconv.FormatFloat(float64(x), 'g', -1, 32)
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case string:
		return strconv.Quote(x)
	case []byte:
		return "0x" + hex.EncodeToString(x)
	case changeevent.Weights:
		return `w"` + hex.EncodeToString(x) + `"`
	}
	return strconv.Quote(fmt.Sprint(v))
}

// TableKey names a table for ordering and metrics: db.table.
func TableKey(e *changeevent.Event) string { return e.Source.DB + "." + e.Source.Table }
