package changeevent

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
)

func TestSplitJoin(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789"), 1000)
	for _, size := range []int{0, 1, 7, 999, 10000, 20000} {
		parts := Split(data, size)
		j := NewJoiner()
		var whole []byte
		done := false
		// deliver the parts last first, with the first part twice (a redelivery)
		order := []int{0}
		if len(parts) > 1 {
			order = append(order, 0)
		}
		for i := len(parts) - 1; i >= 1; i-- {
			order = append(order, i)
		}
		for _, i := range order {
			h := http.Header{}
			h.Set(PartOfHeader, "a:0-1-1:0")
			h.Set(PartHeader, strconv.Itoa(i))
			h.Set(PartsHeader, strconv.Itoa(len(parts)))
			info, ok, err := ParsePart(h.Get)
			if err != nil || !ok {
				t.Fatalf("size %d: ParsePart: %v %v", size, ok, err)
			}
			if w, d := j.Add(info, parts[i]); d {
				if done {
					t.Fatalf("size %d: joined twice", size)
				}
				whole, done = w, true
			}
		}
		if len(parts) > 1 && j.Pending() != 0 {
			t.Fatalf("size %d: %d events still pending", size, j.Pending())
		}
		if !bytes.Equal(whole, data) {
			t.Fatalf("size %d: joined %d bytes, want %d", size, len(whole), len(data))
		}
	}
}

func TestParsePartRejectsBadHeaders(t *testing.T) {
	for _, tc := range []struct{ part, parts string }{{"x", "2"}, {"2", "2"}, {"-1", "2"}, {"0", "0"}} {
		h := http.Header{}
		h.Set(PartOfHeader, "id")
		h.Set(PartHeader, tc.part)
		h.Set(PartsHeader, tc.parts)
		if _, ok, err := ParsePart(h.Get); !ok || err == nil {
			t.Fatalf("%v: want an error, got ok=%v err=%v", tc, ok, err)
		}
	}
	if _, ok, err := ParsePart(http.Header{}.Get); ok || err != nil {
		t.Fatalf("whole message: ok=%v err=%v", ok, err)
	}
}

func TestDecodeMessage(t *testing.T) {
	enc := NewEncoder()
	var body []byte
	for i := range 3 {
		e := &Event{Op: OpCreate, After: Row{"id": int64(i)}, Key: Row{"id": int64(i)},
			Columns:     []Column{{Name: "id", Kind: KindInt, PK: true}},
			Source:      Source{Name: "a", GTID: "1-1-5", Row: i, DB: "d", Table: "t"},
			Transaction: Transaction{ID: "1-1-5", Index: i, Total: 3, Last: i == 2}}
		if i > 0 {
			body = append(body, '\n')
		}
		var err error
		if body, err = enc.Append(body, e); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := DecodeMessage(body)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(evs), 3; got != want {
		t.Fatalf("events: got %d, want %d", got, want)
	}
	for i, e := range evs {
		if got := e.After["id"]; got != int64(i) {
			t.Fatalf("event %d: id %v", i, got)
		}
	}
	if _, err := DecodeMessage([]byte("\n")); err == nil {
		t.Fatal("empty message decoded")
	}
	if _, err := DecodeMessage(append(body, []byte("\n{bad")...)); err == nil {
		t.Fatal("bad trailing event decoded")
	}
}
