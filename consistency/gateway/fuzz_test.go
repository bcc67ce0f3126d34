package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/zap"
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

// FuzzConn runs a connection's command loop between a client and a backend that send
// fuzzed packet streams: it must end (no hang), never panic, and end every transaction
// that acquired tables (Ended last).
//
//	go test -run x -fuzz FuzzConn -fuzztime 60s -fuzzminimizetime 5s ./consistency/gateway/
func FuzzConn(f *testing.F) {
	cmds := func(payloads ...[]byte) []byte { // commands, sequence id 0
		var b bytes.Buffer
		for _, p := range payloads {
			_ = writePacket(&b, packet{data: p})
		}
		return b.Bytes()
	}
	pk := func(_ byte, payloads ...[]byte) []byte { // one response, sequence ids from 1
		var b bytes.Buffer
		for i, p := range payloads {
			_ = writePacket(&b, packet{seq: byte(i + 1), data: p})
		}
		return b.Bytes()
	}
	ok := []byte{0, 0, 0, 2, 0, 0, 0}
	okTrans := []byte{0, 0, 0, 3, 0, 0, 0}
	state := func(inTrans, gtid string) []byte { // SELECT @@in_transaction, @@last_gtid
		row := append([]byte{byte(len(inTrans))}, inTrans...)
		row = append(append(row, byte(len(gtid))), gtid...)
		var b bytes.Buffer
		for i, p := range [][]byte{{2}, {3, 'd', 'e', 'f'}, {3, 'd', 'e', 'f'}, row, {0xFE, 0, 0, 2, 0, 0, 0}} {
			_ = writePacket(&b, packet{seq: byte(i + 1), data: p})
		}
		return b.Bytes()
	}
	query := func(q string) []byte { return append([]byte{3}, q...) }
	// Autocommit UPDATE: state, OK, state. Then BEGIN, UPDATE, COMMIT.
	f.Add(cmds(query("UPDATE t SET a = 1")), slices.Concat(state("0", "1-1-1"), pk(1, ok), state("0", "1-1-2")), true)
	f.Add(cmds(query("BEGIN"), query("UPDATE t SET a = 1"), query("COMMIT")),
		slices.Concat(pk(1, okTrans), state("1", "1-1-1"), pk(1, okTrans), pk(1, ok), state("0", "1-1-3")), true)
	f.Add(cmds(append([]byte{0x16}, "SELECT * FROM t WHERE a = ?"...), []byte{0x17, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 0, 1, 0, 0, 0}),
		slices.Concat(pk(1, []byte{0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0}, []byte{3, 'd', 'e', 'f'}, []byte{3, 'd', 'e', 'f'}),
			state("0", ""), pk(1, []byte{1}, []byte{3, 'd', 'e', 'f'}, []byte{0, 0, 1}, []byte{0xFE, 0, 0, 2, 0, 0, 0}), state("0", "")), true)
	f.Add(cmds(query("BEGIN; UPDATE t SET a = 1; COMMIT"), []byte{0x11, 'u', 0, 0, 'd', 0}), slices.Concat(state("0", ""),
		pk(1, []byte{0, 0, 0, 11, 0, 0, 0}, []byte{0, 0, 0, 11, 0, 0, 0}, ok), state("0", "1-1-9"), pk(1, ok)), true)

	f.Fuzz(connOnce)
}

// connOnce runs one connection of FuzzConn.
func connOnce(t *testing.T, fromClient, fromServer []byte, deprecateEOF bool) {
	{
		rec := &recorder{sync: map[string]bool{"t": true}}
		g := &Gateway{cfg: Config{MaxPacket: 1 << 20, Hooks: rec}, log: zap.NewNop(), metrics: newMetrics(), hard: context.Background()}
		cc, client := net.Pipe()
		sc, server := net.Pipe()
		c := newConn(context.Background(), g, cc)
		c.server, c.cw, c.sw, c.id, c.db, c.dbKnown = sc, bufio.NewWriter(cc), bufio.NewWriter(sc), 1, "d", true
		if deprecateEOF {
			c.caps = uint64(mysql.CLIENT_DEPRECATE_EOF)
		}
		go c.pump(bufio.NewReader(cc), c.fromClient, &c.clientErr, c.clientGone)
		go c.pump(bufio.NewReader(sc), c.fromServer, &c.serverErr, func() {})
		go func() { _, _ = client.Write(fromClient); _, _ = io.Copy(io.Discard, client) }()
		go fakeServer(server, fromServer)
		done := make(chan struct{})
		go func() {
			defer close(done)
			defer c.finish()
			c.run()
		}()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("connection did not end:\n%s", buf[:runtime.Stack(buf, true)])
		}
		client.Close()
		if n := testutil.ToFloat64(g.metrics.errors.WithLabelValues("panic")); n != 0 {
			t.Fatal("connection panicked")
		}
		calls := rec.take(1)
		t.Logf("hook calls: %+v", calls)
		acquired := slices.ContainsFunc(calls, func(c call) bool { return c.Hook == "acquire" })
		if acquired && calls[len(calls)-1].Hook != "ended" {
			t.Fatalf("transaction not ended: %+v", calls)
		}
	}
}

// fakeServer answers each command read from conn with the next response of script (a
// packet stream; a packet with sequence id 1 starts a new response), then closes.
func fakeServer(conn net.Conn, script []byte) {
	defer conn.Close()
	var responses [][]byte
	for rest := script; len(rest) > 0; {
		r := bytes.NewReader(rest)
		p, err := readPacket(r, 1<<20)
		used := len(rest) - r.Len()
		switch {
		case err != nil:
			used = len(rest)
			fallthrough
		case p.seq == 1 || len(responses) == 0:
			responses = append(responses, rest[:used])
		default:
			responses[len(responses)-1] = append(responses[len(responses)-1], rest[:used]...)
		}
		rest = rest[used:]
	}
	r := bufio.NewReader(conn)
	for _, resp := range responses {
		for {
			// A gateway that waits for more of a response gets EOF instead of a hang.
			_ = conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			p, err := readPacket(r, 1<<20)
			if err != nil {
				return
			}
			if len(p.data) == 0 || (p.data[0] != mysql.COM_STMT_CLOSE && p.data[0] != mysql.COM_STMT_SEND_LONG_DATA) {
				break
			}
		}
		if _, err := conn.Write(resp); err != nil {
			return
		}
	}
}
