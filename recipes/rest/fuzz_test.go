package rest

import (
	"bytes"
	"errors"
	"net/url"
	"testing"
)

// FuzzDecode feeds arbitrary bodies and key strings to the request decoders: they must
// never panic, and every failure must be a caller error (a 4xx).
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"values": {"k": "a", "v": 1}, "consistencyInfo": {"type": "critical", "lockId": "$ks.t.a$1"}}`,
		`{"fields": {"a": "text", "PRIMARY KEY": "((a, b), c)"}, "clusteringOrder": "c DESC"}`,
		`{"replicationInfo": {"class": "SimpleStrategy", "replication_factor": "3"}, "durabilityOfWrites": true}`,
		`{"ttl": "-1"}`, `{"ttl": 1e99}`, `[]`, `{"values": null}`, `{"a": {"b": [1, {"c": "\u0000"}]}}`, ``, `{`,
		`(a, b), c`, `((a`, `a, b, c`,
		`{"primaryKey": "id", "primaryKeyValue": 1, "casscadeColumnName": "plans", "tableValues": {"id": "1"},
		  "casscadeColumnData": {"key": "p", "value": {"a": 1}}, "conditions": {"exists": {"status": "x"}, "nonexists": {"status": "y"}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var row jsonRow
		check(t, decode(bytes.NewReader(data), &row, true))
		_, _ = jsonValues(row.Values), jsonValues(row.Conditions)
		if row.TTL != nil {
			_, err := intField("ttl", row.TTL)
			check(t, err)
		}
		var tbl jsonTable
		if decode(bytes.NewReader(data), &tbl, true) == nil {
			_, err := tableSpec("ks", "tb", tbl)
			check(t, err)
			check(t, checkQueueTable(tbl))
		}
		var ks jsonKeySpace
		if decode(bytes.NewReader(data), &ks, true) == nil {
			_, err := boolField("durabilityOfWrites", ks.DurabilityOfWrites)
			check(t, err)
		}
		for _, insert := range []bool{true, false} {
			_, err := decodeConditional(bytes.NewReader(data), insert)
			check(t, err)
		}
		_, _, err := primaryKey(string(data))
		check(t, err)
		if q, err := url.ParseQuery(string(data)); err == nil {
			_, err := rowKey(q)
			check(t, err)
		}
	})
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil && !errors.Is(err, errBadRequest) {
		t.Fatalf("decoder error is not a bad request: %v", err)
	}
	if err != nil && statusOf(err) != 400 {
		t.Fatalf("decoder error maps to %d: %v", statusOf(err), err)
	}
}
