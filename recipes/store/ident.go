package store

import (
	"regexp"
	"strings"
)

var (
	identRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)
	dcRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// baseTypes are CQL's native types.
var baseTypes = map[string]bool{"ascii": true, "bigint": true, "blob": true, "boolean": true, "counter": true,
	"date": true, "decimal": true, "double": true, "duration": true, "float": true, "inet": true, "int": true,
	"smallint": true, "text": true, "time": true, "timestamp": true, "timeuuid": true, "tinyint": true,
	"uuid": true, "varchar": true, "varint": true}

// typeArgs is how many type arguments each parameterised type takes (-1: one or more).
var typeArgs = map[string]int{"list": 1, "set": 1, "map": 2, "frozen": 1, "tuple": -1}

// Ident checks an unquoted CQL identifier (keyspace, table, column, index) and returns it
// in lower case, as Cassandra folds it.
func Ident(kind, s string) (string, error) {
	if !identRE.MatchString(s) {
		return "", invalid("%s name %q must be a letter followed by up to 47 letters, digits or '_'", kind, s)
	}
	return strings.ToLower(s), nil
}

// ColumnType checks a CQL column type: a native type, list<T>, set<T>, map<K, V>,
// tuple<T, ...> or frozen<T>, nested, or a user type's name inside frozen<...>. It
// returns the type normalised (lower case, ", " between arguments), without a frozen<>
// around the whole type.
func ColumnType(s string) (string, error) {
	t, rest, err := parseType(strings.ToLower(strings.TrimSpace(s)), 0)
	if err != nil || rest != "" {
		return "", invalid("column type %q is not a CQL type", s)
	}
	if in, ok := strings.CutPrefix(t, "frozen<"); ok {
		t = strings.TrimSuffix(in, ">")
	}
	return t, nil
}

// parseType reads one type from the start of s and returns it and what follows.
func parseType(s string, depth int) (string, string, error) {
	s = strings.TrimSpace(s)
	end := strings.IndexAny(s, "<>,")
	if end < 0 {
		end = len(s)
	}
	name := strings.TrimSpace(s[:end])
	rest := s[end:]
	n, param := typeArgs[name]
	switch {
	case depth > 8:
		return "", "", invalid("type nested too deep")
	case !param && strings.HasPrefix(rest, "<"):
		return "", "", invalid("type %s takes no arguments", name)
	case !param && (baseTypes[name] || depth > 0 && identRE.MatchString(name)):
		return name, rest, nil // a user type only inside another type (frozen<address>)
	case !param || !strings.HasPrefix(rest, "<"):
		return "", "", invalid("bad type %q", name)
	}
	var args []string
	rest = rest[1:]
	for {
		a, r, err := parseType(rest, depth+1)
		if err != nil {
			return "", "", err
		}
		args, rest = append(args, a), strings.TrimSpace(r)
		if !strings.HasPrefix(rest, ",") {
			break
		}
		rest = rest[1:]
	}
	if !strings.HasPrefix(rest, ">") || n > 0 && len(args) != n {
		return "", "", invalid("bad arguments to %s", name)
	}
	return name + "<" + strings.Join(args, ", ") + ">", rest[1:], nil
}

func idents(kind string, in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, s := range in {
		id, err := Ident(kind, strings.TrimSpace(s))
		if err != nil {
			return nil, err
		}
		out = append(out, id)
	}
	return out, nil
}
