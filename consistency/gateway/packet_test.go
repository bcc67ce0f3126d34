package gateway

import (
	"bytes"
	"errors"
	"testing"

	"github.com/go-mysql-org/go-mysql/mysql"
)

func TestPacketFragments(t *testing.T) {
	for _, n := range []int{0, 1, maxFragment - 1, maxFragment, maxFragment + 1, 2 * maxFragment} {
		in := packet{seq: 254, data: bytes.Repeat([]byte{'x'}, n)}
		var wire bytes.Buffer
		if err := writePacket(&wire, in); err != nil {
			t.Fatal(err)
		}
		if got, want := wire.Len(), n+4*(n/maxFragment+1); got != want {
			t.Fatalf("%d bytes: %d on the wire, want %d", n, got, want)
		}
		out, err := readPacket(&wire, 1<<30)
		if err != nil || out.seq != in.seq || !bytes.Equal(out.data, in.data) || wire.Len() != 0 {
			t.Fatalf("%d bytes: read back %d bytes seq %d, err %v", n, len(out.data), out.seq, err)
		}
		if got, want := out.next(), in.seq+byte(n/maxFragment)+1; got != want {
			t.Fatalf("%d bytes: next %d, want %d", n, got, want)
		}
	}
	var wire bytes.Buffer
	_ = writePacket(&wire, packet{data: make([]byte, 100)})
	if _, err := readPacket(&wire, 99); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over the limit: %v", err)
	}
}

// TestResponseFraming: where each kind of response ends, and the transaction status it
// reports.
func TestResponseFraming(t *testing.T) {
	inTrans := []byte{0, 0, 0, 1, 0, 0, 0}   // OK, SERVER_STATUS_IN_TRANS
	more := []byte{0, 0, 0, 8, 0, 0, 0}      // OK, SERVER_MORE_RESULTS_EXISTS
	eof := []byte{0xFE, 0, 0, 2, 0}          // EOF, autocommit
	eofCursor := []byte{0xFE, 0, 0, 0x42, 0} // EOF, cursor exists
	okFE := []byte{0xFE, 0, 0, 2, 0, 0, 0}   // OK ending rows (CLIENT_DEPRECATE_EOF)
	col := []byte{3, 'd', 'e', 'f'}          // a column definition (enough here)
	row := []byte{1, 'x'}                    // a text row
	errP := []byte{0xFF, 0x15, 0x04, '#', '2', '8', '0', '0', '0'}
	progress := []byte{0xFF, 0xFF, 0xFF, 1, 1, 0, 0, 0, 0} // MariaDB progress report
	prep := func(cols, params byte) []byte { return []byte{0, 1, 0, 0, 0, cols, 0, params, 0, 0, 0, 0} }
	for _, tc := range []struct {
		name      string
		kind      respKind
		deprecate bool
		packets   [][]byte
		status    uint16 // of the last packet
	}{
		{"ok", respResult, false, [][]byte{inTrans}, mysql.SERVER_STATUS_IN_TRANS},
		{"err", respResult, false, [][]byte{errP}, 0},
		{"progress then ok", respResult, false, [][]byte{progress, progress, inTrans}, mysql.SERVER_STATUS_IN_TRANS},
		{"rows with EOF", respResult, false, [][]byte{{2}, col, col, eof, row, row, eof}, 2},
		{"rows without EOF", respResult, true, [][]byte{{2}, col, col, row, okFE}, 2},
		{"error in rows", respResult, true, [][]byte{{1}, col, row, errP}, 0},
		{"more results", respResult, false, [][]byte{more, {1}, col, eof, row, []byte{0xFE, 0, 0, 0x0A, 0}, inTrans}, 1},
		{"cursor", respResult, false, [][]byte{{1}, col, eofCursor}, 0x42},
		{"cursor without EOF", respResult, true, [][]byte{{1}, col, []byte{0xFE, 0, 0, 0x42, 0, 0, 0}}, 0x42},
		{"fetch", respRows, false, [][]byte{{0, 0, 1}, {0, 0, 2}, []byte{0xFE, 0, 0, 0x82, 0}}, 0x82},
		{"field list", respFields, false, [][]byte{col, col, eof}, 2},
		{"prepare", respPrepare, false, [][]byte{prep(1, 2), col, col, eof, col, eof}, 0},
		{"prepare without EOF", respPrepare, true, [][]byte{prep(1, 2), col, col, col}, 0},
		{"prepare, no columns", respPrepare, false, [][]byte{prep(0, 1), col, eof}, 0},
		{"prepare, nothing", respPrepare, false, [][]byte{prep(0, 0)}, 0},
		{"statistics", respOne, false, [][]byte{[]byte("Uptime: 1")}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newResponse(tc.kind, tc.deprecate)
			for i, p := range tc.packets {
				if r.done {
					t.Fatalf("ended before packet %d", i)
				}
				if err := r.feed(p); err != nil {
					t.Fatalf("packet %d: %v", i, err)
				}
			}
			if !r.done {
				t.Fatal("not ended")
			}
			if r.hasStatus && r.status != tc.status || !r.hasStatus && tc.status != 0 {
				t.Fatalf("status %#x (%v), want %#x", r.status, r.hasStatus, tc.status)
			}
		})
	}
}
