package changeevent

import (
	"reflect"
	"testing"
)

func TestEncoderMatchesMarshal(t *testing.T) {
	enc := NewEncoder()
	e := sampleEvent()
	e.After["s"] = "quote\" back\\ nl\n tab\t ctl\x01 \u2028 <&> 🎵"
	e.Before = Row{"id": uint64(1), "null": nil, "b": []byte{}}
	e.Transaction.Last = true
	e.Source.File, e.Source.Pos = "mariadb-bin.000001", 1234
	for i := range 2 { // the second time with cached columns
		data, err := enc.Append(nil, e)
		if err != nil {
			t.Fatal(err)
		}
		got, err := Unmarshal(data)
		if err != nil {
			t.Fatalf("round %d: %v\n%s", i, err, data)
		}
		std, _ := Marshal(e)
		want, err := Unmarshal(std)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Encoder and Marshal differ:\n%s\n%s", data, std)
		}
	}
	ddl := &Event{Op: OpDDL, DDL: &DDL{Statement: "ALTER TABLE t ADD c INT", Kind: "ALTER"}, Source: Source{Name: "a", GTID: "1-1-1"}}
	data, err := enc.Append(nil, ddl)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Unmarshal(data)
	if err != nil || !reflect.DeepEqual(got.DDL, ddl.DDL) {
		t.Fatalf("ddl %s: %v", data, err)
	}
}

func BenchmarkEncoder(b *testing.B) {
	e := sampleEvent()
	b.Run("Marshal", func(b *testing.B) {
		for range b.N {
			_, _ = Marshal(e)
		}
	})
	b.Run("Encoder", func(b *testing.B) {
		enc := NewEncoder()
		var buf []byte
		for range b.N {
			buf, _ = enc.Append(buf[:0], e)
		}
	})
}

func BenchmarkUnmarshal(b *testing.B) {
	data, err := NewEncoder().Append(nil, sampleEvent())
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for range b.N {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}
