package gateway

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// maxFragment is the largest payload of one wire packet; a longer logical packet is split
// into fragments of this size, the last one shorter (possibly empty).
const maxFragment = 1<<24 - 1

// packet is one logical MySQL packet: its fragments' payloads joined.
type packet struct {
	seq  byte   // sequence id of the first fragment
	data []byte // payload
}

// next is the sequence id that follows the packet's last fragment.
func (p packet) next() byte { return p.seq + byte(len(p.data)/maxFragment) + 1 }

// readPacket reads one logical packet, joining fragments, refusing one longer than limit.
func readPacket(r io.Reader, limit int) (packet, error) {
	var hdr [4]byte
	var p packet
	for i := 0; ; i++ {
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			if i > 0 && errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return p, err
		}
		n := int(hdr[0]) | int(hdr[1])<<8 | int(hdr[2])<<16
		if i == 0 {
			p.seq = hdr[3]
		} else if hdr[3] != p.seq+byte(i) {
			return p, fmt.Errorf("%w: fragment %d has sequence id %d, want %d", ErrProtocol, i, hdr[3], p.seq+byte(i))
		}
		if len(p.data)+n > limit {
			return p, fmt.Errorf("%w (over %d bytes)", ErrTooLarge, limit)
		}
		var err error
		if p.data == nil && n <= 64<<10 {
			p.data = make([]byte, n)
			_, err = io.ReadFull(r, p.data)
		} else { // memory grows as bytes arrive, not as a header claims
			buf := bytes.NewBuffer(p.data)
			_, err = io.CopyN(buf, r, int64(n))
			p.data = buf.Bytes()
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return p, err
		}
		if n < maxFragment {
			return p, nil
		}
	}
}

// writePacket writes p, split into fragments as the protocol requires.
func writePacket(w io.Writer, p packet) error {
	data, seq := p.data, p.seq
	for {
		n := min(len(data), maxFragment)
		hdr := [4]byte{byte(n), byte(n >> 8), byte(n >> 16), seq}
		if _, err := w.Write(hdr[:]); err != nil {
			return err
		}
		if _, err := w.Write(data[:n]); err != nil {
			return err
		}
		data, seq = data[n:], seq+1
		if n < maxFragment {
			return nil
		}
	}
}

// errPacket is an ERR packet (protocol 4.1) carrying e.
func errPacket(seq byte, e *SQLError) packet {
	state := (e.State + "HY000")[:5]
	b := []byte{0xFF, byte(e.Code), byte(e.Code >> 8), '#'}
	b = append(append(b, state...), e.Message...)
	return packet{seq: seq, data: b}
}

// parseErr decodes an ERR packet (b[0] == 0xFF).
func parseErr(b []byte) *SQLError {
	e := &SQLError{Code: 1105, State: "HY000", Message: "malformed ERR packet"}
	if len(b) < 3 {
		return e
	}
	e.Code, b = binary.LittleEndian.Uint16(b[1:3]), b[3:]
	if len(b) >= 6 && b[0] == '#' {
		e.State, b = string(b[1:6]), b[6:]
	}
	e.Message = string(b)
	return e
}

// isProgress reports whether an 0xFF packet is a MariaDB progress report (error code
// 0xFFFF), which precedes the real response instead of ending it.
func isProgress(b []byte) bool { return len(b) >= 3 && b[0] == 0xFF && b[1] == 0xFF && b[2] == 0xFF }

// lenenc decodes a length-encoded integer at the start of b: value, bytes used, ok.
func lenenc(b []byte) (uint64, int, bool) {
	if len(b) == 0 {
		return 0, 0, false
	}
	switch b[0] {
	case 0xFB: // NULL in a row
		return 0, 1, true
	case 0xFC:
		if len(b) < 3 {
			return 0, 0, false
		}
		return uint64(binary.LittleEndian.Uint16(b[1:])), 3, true
	case 0xFD:
		if len(b) < 4 {
			return 0, 0, false
		}
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, true
	case 0xFE:
		if len(b) < 9 {
			return 0, 0, false
		}
		return binary.LittleEndian.Uint64(b[1:]), 9, true
	case 0xFF:
		return 0, 0, false
	}
	return uint64(b[0]), 1, true
}

// textRow decodes a text-protocol row into strings (NULL as "").
func textRow(b []byte) ([]string, error) {
	var row []string
	for len(b) > 0 {
		if b[0] == 0xFB {
			row, b = append(row, ""), b[1:]
			continue
		}
		n, used, ok := lenenc(b)
		if !ok || uint64(len(b)-used) < n {
			return nil, fmt.Errorf("%w: truncated row", ErrProtocol)
		}
		row, b = append(row, string(b[used:used+int(n)])), b[used+int(n):]
	}
	return row, nil
}
