package store

import "testing"

func TestColumnType(t *testing.T) {
	for in, want := range map[string]string{
		"TEXT":                            "text",
		"counter":                         "counter",
		"map<text,int>":                   "map<text, int>",
		"frozen<list<text>>":              "list<text>",
		"map<text, frozen<list<int>>>":    "map<text, frozen<list<int>>>",
		"tuple<int, text, float>":         "tuple<int, text, float>",
		"frozen<address>":                 "address",
		"list<frozen<map<uuid, double>>>": "list<frozen<map<uuid, double>>>",
	} {
		if got, err := ColumnType(in); err != nil || got != want {
			t.Errorf("ColumnType(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{"address", "list<text", "map<text>", "text<int>", "list<text>>", "text) WITH x", "map<text,int>>", "", "list<>", "frozen<a b>"} {
		if got, err := ColumnType(bad); err == nil {
			t.Errorf("ColumnType(%q) = %q, want an error", bad, got)
		}
	}
}
