package cassandra

import (
	"fmt"
	"math/big"
	"regexp"

	"gopkg.in/inf.v0"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/changeevent"
)

var cqlTypes = map[changeevent.Kind]string{
	changeevent.KindInt: "bigint", changeevent.KindYear: "bigint",
	changeevent.KindUint: "varint", changeevent.KindBit: "varint",
	changeevent.KindFloat: "float", changeevent.KindDouble: "double",
	changeevent.KindDecimal: "decimal", changeevent.KindBytes: "blob",
	changeevent.KindDate: "text", changeevent.KindTime: "text",
	changeevent.KindDateTime: "text", changeevent.KindTimestamp: "text",
	changeevent.KindString: "text", changeevent.KindEnum: "text",
	changeevent.KindSet: "text", changeevent.KindJSON: "text",
}

// CQLType is the Cassandra type of a column kind.
func CQLType(k changeevent.Kind) (string, error) {
	t, ok := cqlTypes[k]
	if !ok {
		return "", fmt.Errorf("%w: column kind %q has no Cassandra type", apply.ErrRefused, k)
	}
	return t, nil
}

// cqlValue converts an event value to what gocql marshals to the column's type.
func cqlValue(k changeevent.Kind, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch x := v.(type) {
	case uint64:
		return new(big.Int).SetUint64(x), nil
	case string:
		if k == changeevent.KindDecimal {
			d, ok := new(inf.Dec).SetString(x)
			if !ok {
				return nil, fmt.Errorf("%w: decimal %q", apply.ErrMalformed, x)
			}
			return d, nil
		}
	}
	return v, nil
}

var identRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// quote returns name as a double-quoted CQL identifier, refusing anything beyond
// [A-Za-z0-9_]{1,max} (which also rules out quote characters, so no injection). Keyspace
// and table names may have 48 characters, columns 64 (MariaDB's limit).
func quote(name string, max int) (string, error) {
	if len(name) > max || !identRE.MatchString(name) {
		return "", fmt.Errorf("%w: %q is not a valid Cassandra identifier ([A-Za-z0-9_], at most %d characters)",
			apply.ErrRefused, name, max)
	}
	return `"` + name + `"`, nil
}

// TableName is the MUSIC store table of db.table.
func TableName(db, table string) string { return db + "__" + table }
