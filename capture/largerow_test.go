package capture

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/music-coord/music/changeevent"
)

// TestLargeRows: a row of 20 MiB (LONGBLOB) and an UPDATE of one INT column of a 3 MiB
// row are published in parts (each event is over one message's payload) and joined back
// exactly; changes of another table after them still flow, grouped in one message.
func TestLargeRows(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.exec("CREATE TABLE big (id INT PRIMARY KEY, n INT, b LONGBLOB)", "CREATE TABLE other (id INT PRIMARY KEY)")
	h.start(h.cfg)
	rng := rand.New(rand.NewPCG(7, 8))
	blob := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	huge, medium := blob(20<<20), blob(3<<20)
	if _, err := h.pool.Exec("INSERT INTO big VALUES (1, 0, ?)", huge); err != nil {
		t.Fatal(err)
	}
	if _, err := h.pool.Exec("INSERT INTO big VALUES (2, 0, ?)", medium); err != nil {
		t.Fatal(err)
	}
	h.exec("UPDATE big SET n = 42 WHERE id = 2", "INSERT INTO other VALUES (1),(2),(3)")
	events := h.read(h.cfg.Stream, 2+3+3, 2*time.Minute)
	_, st, err := h.readStream(h.cfg.Stream)
	if err != nil {
		t.Fatal(err)
	}
	rows := rowEvents(events)
	if len(rows) != 6 {
		t.Fatalf("%d row events, want 6", len(rows))
	}
	ins1, ins2, upd := rows[0], rows[1], rows[2]
	if ins1.Op != changeevent.OpCreate || !bytes.Equal(asBytes(ins1.After["b"]), huge) {
		t.Errorf("20 MiB insert: op %s, %d bytes, not the row's", ins1.Op, len(asBytes(ins1.After["b"])))
	}
	if ins2.Op != changeevent.OpCreate || !bytes.Equal(asBytes(ins2.After["b"]), medium) {
		t.Errorf("3 MiB insert: op %s, not the row's bytes", ins2.Op)
	}
	if upd.Op != changeevent.OpUpdate || upd.Before["n"] != int64(0) || upd.After["n"] != int64(42) ||
		!bytes.Equal(asBytes(upd.Before["b"]), medium) || !bytes.Equal(asBytes(upd.After["b"]), medium) {
		t.Errorf("update of n: op %s before n=%v after n=%v; blobs equal %v %v", upd.Op, upd.Before["n"], upd.After["n"],
			bytes.Equal(asBytes(upd.Before["b"]), medium), bytes.Equal(asBytes(upd.After["b"]), medium))
	}
	for i, e := range rows[3:] {
		if e.Source.Table != "other" || e.After["id"] != int64(i+1) || e.Transaction.Total != 3 || e.Transaction.Index != i {
			t.Errorf("other's insert %d: %s %v %+v", i, e.Source.Table, e.After, e.Transaction)
		}
	}
	// 20 MiB is about 27 MiB in base64, the update about 8 MiB: parts of 512 KiB each.
	if st.parts < 60 || st.joined != 3 {
		t.Errorf("%d part messages joined into %d events, want over 60 parts of 3 events", st.parts, st.joined)
	}
	// The DDL (2 messages), 3 events in parts, one message for the 3 inserts of other.
	if st.msgs != 2+st.parts+1 {
		t.Errorf("%d messages, want %d", st.msgs, 2+st.parts+1)
	}
	t.Logf("%d messages, %d of them parts", st.msgs, st.parts)
}

func asBytes(v any) []byte {
	b, _ := v.([]byte)
	return b
}
