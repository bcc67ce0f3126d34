package lock

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// MaxKeyLen bounds the key part of a lock name.
const MaxKeyLen = 512

// Name is a parsed lock name.
type Name struct{ Keyspace, Table, Key string }

// String is "keyspace.table.key".
func (n Name) String() string { return n.Keyspace + "." + n.Table + "." + n.Key }

// ParseName splits "keyspace.table.key"; the key may contain dots.
func ParseName(s string) (Name, error) {
	ks, rest, ok1 := strings.Cut(s, ".")
	tb, key, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || ks == "" || tb == "" || key == "" || len(key) > MaxKeyLen {
		return Name{}, fmt.Errorf("%w: %q", ErrBadName, s)
	}
	if !isIdent(ks) || !isIdent(tb) {
		return Name{}, fmt.Errorf("%w: %q: keyspace and table must be identifiers", ErrBadName, s)
	}
	return Name{Keyspace: strings.ToLower(ks), Table: strings.ToLower(tb), Key: key}, nil
}

func isIdent(s string) bool {
	if len(s) == 0 || len(s) > 48 {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '_'):
		default:
			return false
		}
	}
	return true
}

// Ref is a parsed lock reference.
type Ref struct {
	Name Name
	Seq  int64
}

// String is ONAP's "$<name>$<seq>".
func (r Ref) String() string { return "$" + r.Name.String() + "$" + strconv.FormatInt(r.Seq, 10) }

// ParseRef parses "$keyspace.table.key$<seq>".
func ParseRef(s string) (Ref, error) {
	if !strings.HasPrefix(s, "$") {
		return Ref{}, fmt.Errorf("%w: %q", ErrBadRef, s)
	}
	i := strings.LastIndexByte(s, '$')
	if i <= 0 {
		return Ref{}, fmt.Errorf("%w: %q", ErrBadRef, s)
	}
	n, err := ParseName(s[1:i])
	if err != nil {
		return Ref{}, fmt.Errorf("%w: %w", ErrBadRef, err)
	}
	seq, err := strconv.ParseInt(s[i+1:], 10, 64)
	if err != nil || seq < 0 {
		return Ref{}, fmt.Errorf("%w: %q: sequence is not a number", ErrBadRef, s)
	}
	return Ref{Name: n, Seq: seq}, nil
}

// node is the znode name of a lock name: the key is escaped so '/' cannot leave it.
func (n Name) node() string { return url.PathEscape(n.String()) }
