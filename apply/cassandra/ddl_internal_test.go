package cassandra

import (
	"strings"
	"testing"
)

func TestTableDDLPatterns(t *testing.T) {
	for stmt, want := range map[string]string{
		"DROP TABLE IF EXISTS kv":                 "kv",
		"drop table `shop`.`kv`;":                 "kv",
		"DROP TABLE IF EXISTS musicdemo.accounts": "accounts",
		"DROP TABLE a, b":                         "",
		"TRUNCATE TABLE shop.kv":                  "kv",
	} {
		re := dropTableRE
		if strings.HasPrefix(stmt, "TRUNCATE") {
			re = truncateTableRE
		}
		got := ""
		if m := re.FindStringSubmatch(stmt); m != nil {
			got = m[1]
		}
		if got != want {
			t.Errorf("%q: table %q, want %q", stmt, got, want)
		}
	}
}
