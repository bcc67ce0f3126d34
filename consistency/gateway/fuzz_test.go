package gateway

import (
	"bytes"
	"testing"
)

// FuzzDecoders splits data into packets and runs every decoder on them: the packet
// reader (whose output must write back byte for byte), the response follower of each
// kind, the handshake parsers and the row decoder. None may panic or loop.
//
//	go test -run x -fuzz FuzzDecoders -fuzztime 60s ./consistency/gateway/
func FuzzDecoders(f *testing.F) {
	pk := func(seq byte, payloads ...[]byte) []byte {
		var b bytes.Buffer
		for _, p := range payloads {
			_ = writePacket(&b, packet{seq: seq, data: p})
			seq++
		}
		return b.Bytes()
	}
	eof := []byte{0xFE, 0, 0, 2, 0}
	f.Add(pk(1, []byte{0, 0, 0, 2, 0, 0, 0}), byte(respResult), false)
	f.Add(pk(1, []byte{1}, []byte{3, 'd', 'e', 'f'}, eof, []byte{1, 'x'}, eof), byte(respResult), false)
	f.Add(pk(1, []byte{1}, []byte{3, 'd', 'e', 'f'}, []byte{1, 'x'}, []byte{0xFE, 0, 0, 2, 0, 0, 0}), byte(respResult), true)
	f.Add(pk(1, []byte{0, 1, 0, 0, 0, 1, 0, 2, 0, 0, 0, 0}, []byte{3, 'd', 'e', 'f'}, []byte{3, 'd', 'e', 'f'}, eof,
		[]byte{3, 'd', 'e', 'f'}, eof), byte(respPrepare), false)
	f.Add(pk(1, []byte{0xFF, 0xFF, 0xFF, 1, 2, 0, 0, 0}, []byte{0xFF, 0x15, 0x04, '#', '2', '8', '0', '0', '0', 'n', 'o'}), byte(respResult), false)
	f.Add(pk(0, append([]byte{10}, "10.11.0\x00\x07\x00\x00\x00abcdefgh\x00\xfe\xf7\x2d\x02\x00\xff\x81\x15\x00\x00\x00\x00\x00\x00\x1d\x00\x00\x00ijklmnopqrst\x00mysql_native_password\x00"...)), byte(respOne), false)
	resp := append(make([]byte, 32), "root\x00\x14abcdefghijklmnopqrst"+"db\x00mysql_native_password\x00"...)
	resp[0], resp[1], resp[2] = 0x0F, 0xA2, 0x3E
	f.Add(pk(1, resp), byte(respResult), true)
	f.Add(append([]byte{0xFF, 0xFF, 0xFF, 0}, bytes.Repeat([]byte{1}, 100)...), byte(respRows), true)

	f.Fuzz(func(t *testing.T, data []byte, kind byte, deprecateEOF bool) {
		r := bytes.NewReader(data)
		resp := newResponse(respKind(kind%5), deprecateEOF)
		for {
			before := len(data) - r.Len()
			p, err := readPacket(r, 1<<20)
			if err != nil {
				return
			}
			var back bytes.Buffer
			if err := writePacket(&back, p); err != nil || !bytes.Equal(back.Bytes(), data[before:len(data)-r.Len()]) {
				t.Fatalf("packet does not write back as read: %v", err)
			}
			if !resp.done {
				if resp.feed(p.data) != nil {
					resp = newResponse(respKind(kind%5), deprecateEOF)
				}
			}
			if g, err := parseGreeting(p.data); err == nil {
				g.caps.set(p.data, g.caps.get(p.data)&allowedCaps)
			}
			if h, err := parseHandshakeResponse(p.data); err == nil {
				h.caps.set(p.data, h.caps.get(p.data)&allowedCaps)
			}
			changeUserDB(p.data, uint64(kind)<<8)
			_, _ = textRow(p.data)
			_ = parseErr(p.data)
			if len(p.data) > 0 {
				_, _ = eofStatus(p.data)
			}
		}
	})
}
