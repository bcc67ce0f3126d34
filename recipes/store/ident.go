package store

import (
	"regexp"
	"strings"
)

var (
	identRE = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,47}$`)
	baseRE  = `(ascii|bigint|blob|boolean|date|decimal|double|float|inet|int|smallint|text|time|timestamp|timeuuid|tinyint|uuid|varchar|varint)`
	typeRE  = regexp.MustCompile(`^(` + baseRE + `|(list|set)<` + baseRE + `>|map<` + baseRE + `,\s*` + baseRE + `>)$`)
	dcRE    = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)
)

// Ident checks an unquoted CQL identifier (keyspace, table, column, index) and returns it
// in lower case, as Cassandra folds it.
func Ident(kind, s string) (string, error) {
	if !identRE.MatchString(s) {
		return "", invalid("%s name %q must be a letter followed by up to 47 letters, digits or '_'", kind, s)
	}
	return strings.ToLower(s), nil
}

// ColumnType checks a column type such as "text", "list<int>" or "map<text, int>",
// with an optional frozen<...>, and returns it normalised.
func ColumnType(s string) (string, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	if in, ok := strings.CutPrefix(t, "frozen<"); ok && strings.HasSuffix(in, ">") {
		t = strings.TrimSuffix(in, ">")
	}
	if !typeRE.MatchString(t) {
		return "", invalid("column type %q is not supported", s)
	}
	return t, nil
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
