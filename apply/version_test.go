package apply

import (
	"errors"
	"testing"

	"github.com/music-coord/music/changeevent"
)

func TestParseGTID(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want GTID
		ok   bool
	}{
		{"1-2-3", GTID{1, 2, 3}, true},
		{"0-1-18446744073709551615", GTID{0, 1, 1<<64 - 1}, true},
		{"1-2", GTID{}, false},
		{"a-b-c", GTID{}, false},
		{"1-2-3-4", GTID{}, false},
	} {
		got, err := ParseGTID(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseGTID(%q) = %v, %v", tc.in, got, err)
		}
		if tc.ok && got.String() != tc.in {
			t.Errorf("String() = %q, want %q", got.String(), tc.in)
		}
	}
}

func TestVersionOrderAndWriteTimestamp(t *testing.T) {
	// Ascending: time first, then domain, then sequence.
	asc := []Version{
		{TsUs: 1000, Domain: 9, Seq: 99},
		{TsUs: 2000, Domain: 1, Seq: 5},
		{TsUs: 2001, Domain: 1, Seq: 6},
		{TsUs: 2001, Domain: 2, Seq: 1},
		{TsUs: 2002, Domain: 1, Seq: 1},
		{TsUs: 1 << 58, Domain: 15, Seq: 1 << 40},
	}
	for i := range asc {
		for j := range asc {
			want := 0
			if i < j {
				want = -1
			} else if i > j {
				want = 1
			}
			if got := asc[i].Compare(asc[j]); got != want {
				t.Errorf("%v.Compare(%v) = %d, want %d", asc[i], asc[j], got, want)
			}
			wi, err1 := asc[i].WriteTimestamp()
			wj, err2 := asc[j].WriteTimestamp()
			if err1 != nil || err2 != nil || (wi < wj) != (i < j) {
				t.Errorf("write timestamps %d (%v), %d (%v) do not order like the versions", wi, err1, wj, err2)
			}
		}
	}
	if _, err := (Version{TsUs: 1, Domain: 16}).WriteTimestamp(); !errors.Is(err, ErrRefused) {
		t.Errorf("domain 16: %v, want ErrRefused", err)
	}
	v := Version{TsUs: 1_800_000_000_123_456, Domain: 3, Seq: 7}
	if wt, _ := v.WriteTimestamp(); VersionOf(wt) != (Version{TsUs: v.TsUs, Domain: v.Domain}) {
		t.Errorf("VersionOf(WriteTimestamp(%v)) = %v", v, VersionOf(wt))
	}
}

func TestEncodeKeyIsCanonical(t *testing.T) {
	pk := []changeevent.Column{{Name: "a", Kind: changeevent.KindInt, PK: true}, {Name: "b", Kind: changeevent.KindBytes, PK: true},
		{Name: "c", Kind: changeevent.KindString, PK: true}}
	got, err := EncodeKey(pk, changeevent.Row{"a": int64(-1), "b": []byte{0, 255}, "c": "x\",y"})
	if err != nil || got != `[-1,0x00ff,"x\",y"]` {
		t.Fatalf("EncodeKey = %q, %v", got, err)
	}
	if _, err := EncodeKey(pk, changeevent.Row{"a": int64(1)}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("missing key column: %v, want ErrMalformed", err)
	}
}

func TestChangesOfAnUpdateThatMovesTheKey(t *testing.T) {
	cols := []changeevent.Column{{Name: "id", Kind: changeevent.KindInt, PK: true}, {Name: "v", Kind: changeevent.KindString}}
	e := &changeevent.Event{Op: changeevent.OpUpdate, Columns: cols,
		Before: changeevent.Row{"id": int64(1), "v": "a"}, After: changeevent.Row{"id": int64(2), "v": "a"}}
	cs, err := Changes(e)
	if err != nil || len(cs) != 2 || cs[0].Key != "[1]" || cs[0].Image != nil || cs[1].Key != "[2]" || cs[1].Image == nil {
		t.Fatalf("Changes = %+v, %v: want delete [1] then write [2]", cs, err)
	}
	e.Columns = cols[1:]
	if _, err := Changes(e); !errors.Is(err, ErrRefused) {
		t.Fatalf("no primary key: %v, want ErrRefused", err)
	}
}
