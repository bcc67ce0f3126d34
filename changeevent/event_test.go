package changeevent

import (
	"bytes"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
)

func sampleEvent() *Event {
	cols := []Column{
		{Name: "id", Kind: KindUint, SQLType: "bigint(20) unsigned", PK: true},
		{Name: "i", Kind: KindInt, SQLType: "bigint(20)", Nullable: true},
		{Name: "f", Kind: KindFloat, SQLType: "float", Nullable: true},
		{Name: "d", Kind: KindDouble, SQLType: "double", Nullable: true},
		{Name: "dec", Kind: KindDecimal, SQLType: "decimal(30,10)", Nullable: true},
		{Name: "bit", Kind: KindBit, SQLType: "bit(64)", Nullable: true},
		{Name: "ts", Kind: KindTimestamp, SQLType: "timestamp(6)", Nullable: true},
		{Name: "t", Kind: KindTime, SQLType: "time(3)", Nullable: true},
		{Name: "s", Kind: KindString, SQLType: "varchar(10)", Nullable: true},
		{Name: "b", Kind: KindBytes, SQLType: "blob", Nullable: true},
		{Name: "empty", Kind: KindBytes, SQLType: "varbinary(4)", Nullable: true},
		{Name: "null", Kind: KindString, SQLType: "text", Nullable: true},
	}
	after := Row{
		"id": uint64(math.MaxUint64), "i": int64(math.MinInt64), "f": float32(0.1), "d": 1e-300,
		"dec": "-12345678901234567890.1234567890", "bit": uint64(1) << 63,
		"ts": "2038-01-19 03:14:07.999999", "t": "-838:59:59.000", "s": "🎵\x00é",
		"b": []byte{0, 255, 10}, "empty": []byte{}, "null": nil,
	}
	return &Event{
		After:         after,
		Source:        Source{Version: "test", Connector: "mariadb", Name: "a", ServerID: 1, GTID: "1-1-42", Row: 2, DB: "shop", Table: "t"},
		Op:            OpCreate,
		Transaction:   Transaction{ID: "1-1-42", Index: 2, Total: 3},
		Key:           Row{"id": uint64(math.MaxUint64)},
		Columns:       cols,
		SchemaVersion: "1-1-7",
	}
}

func TestRoundTripIsExact(t *testing.T) {
	e := sampleEvent()
	data, err := Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"id":18446744073709551615`, `"op":"c"`, `"before":null`, `"null":null`, `"empty":""`} {
		if !bytes.Contains(data, []byte(want)) {
			t.Fatalf("encoding %s lacks %s", data, want)
		}
	}
	got, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip changed the event:\n got %#v\nwant %#v", got, e)
	}
}

func TestUnmarshalRejects(t *testing.T) {
	cases := map[string]struct{ json, want string }{
		"not json":        {`{"op":`, "malformed"},
		"unknown op":      {`{"op":"x","source":{"name":"a","gtid":"1-1-1"}}`, `unknown op "x"`},
		"create no after": {`{"op":"c","source":{"name":"a","gtid":"1-1-1"}}`, "without after"},
		"no gtid":         {`{"op":"d","before":{},"source":{"name":"a"}}`, "source.gtid"},
		"unknown column":  {`{"op":"c","after":{"x":1},"columns":[],"source":{"name":"a","gtid":"1-1-1","table":"t"}}`, `column "x"`},
		"uint overflow": {`{"op":"c","after":{"x":18446744073709551616},"columns":[{"name":"x","kind":"uint"}],"source":{"name":"a","gtid":"1-1-1","table":"t"}}`,
			"column x"},
		"bad base64": {`{"op":"c","after":{"x":"!!"},"columns":[{"name":"x","kind":"bytes"}],"source":{"name":"a","gtid":"1-1-1","table":"t"}}`,
			"column x"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := Unmarshal([]byte(tc.json))
			if err == nil || !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Unmarshal() = %v, want ErrMalformed naming %q", err, tc.want)
			}
		})
	}
}

func TestSubjectEscapesNames(t *testing.T) {
	cases := []struct{ site, db, table, want string }{
		{"a", "shop", "orders", "music.cdc.a.shop.orders"},
		{"a", "my.db", "t*>", "music.cdc.a.my%2Edb.t%2A%3E"},
		{"b", "x y", "100%", "music.cdc.b.x%20y.100%25"},
	}
	for _, c := range cases {
		if got := Subject(c.site, c.db, c.table); got != c.want {
			t.Errorf("Subject(%q,%q,%q) = %q, want %q", c.site, c.db, c.table, got, c.want)
		}
	}
	if got, want := MsgID("a", "1-1-9", 3), "a:1-1-9:3"; got != want {
		t.Errorf("MsgID = %q, want %q", got, want)
	}
}

func FuzzUnmarshal(f *testing.F) {
	data, _ := Marshal(sampleEvent())
	f.Add(data)
	f.Add([]byte(`{"op":"d","before":{"id":1},"columns":[{"name":"id","kind":"int"}],"source":{"name":"a","gtid":"1-1-1"}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Unmarshal(b)
		if err != nil {
			return
		}
		// Whatever decodes must encode and decode to the same event.
		again, err := Marshal(e)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := Unmarshal(again); err != nil {
			t.Fatalf("re-decode of %s: %v", again, err)
		}
	})
}
