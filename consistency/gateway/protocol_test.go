package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// rawClient speaks the protocol by hand, as root without a password, with the
// capabilities a test picks.
type rawClient struct {
	t      *testing.T
	conn   net.Conn
	r      *bufio.Reader
	caps   uint64 // as granted: asked & offered
	greetC uint64 // offered by the gateway
}

// Capabilities MariaDB Connector/J 3.5 asks for (with allowMultiQueries and
// allowLocalInfile), MariaDB's extended ones included.
const jdbcCaps = uint64(mysql.CLIENT_IGNORE_SPACE|mysql.CLIENT_PROTOCOL_41|mysql.CLIENT_TRANSACTIONS|
	mysql.CLIENT_SECURE_CONNECTION|mysql.CLIENT_MULTI_RESULTS|mysql.CLIENT_PS_MULTI_RESULTS|
	mysql.CLIENT_PLUGIN_AUTH|mysql.CLIENT_CONNECT_ATTRS|mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA|
	mysql.CLIENT_SESSION_TRACK|mysql.CLIENT_DEPRECATE_EOF|mysql.CLIENT_FOUND_ROWS|mysql.CLIENT_MULTI_STATEMENTS|
	mysql.CLIENT_LOCAL_FILES|mysql.CLIENT_CONNECT_WITH_DB|mysql.CLIENT_COMPRESS) |
	mariadbProgress | mariadbBulk | mariadbExtendedMeta | mariadbCacheMetadata | mariadbBulkUnitResults

func dialRaw(t *testing.T, addr, db string, caps uint64) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	_ = nc.SetDeadline(time.Now().Add(60 * time.Second))
	c := &rawClient{t: t, conn: nc, r: bufio.NewReader(nc)}
	hello := c.read()
	g, err := parseGreeting(hello.data)
	if err != nil {
		t.Fatal(err)
	}
	c.greetC = g.caps.get(hello.data)
	c.caps = caps & c.greetC
	resp := make([]byte, 32)
	binary.LittleEndian.PutUint32(resp, uint32(caps))
	binary.LittleEndian.PutUint32(resp[4:], 1<<24)
	resp[8] = 45 // utf8mb4_general_ci
	binary.LittleEndian.PutUint32(resp[28:], uint32(caps>>32))
	resp = append(resp, "root\x00"...)
	resp = append(resp, 0) // empty auth data
	resp = append(resp, db+"\x00"...)
	resp = append(resp, "mysql_native_password\x00"...)
	if caps&uint64(mysql.CLIENT_CONNECT_ATTRS) != 0 {
		resp = append(resp, 0)
	}
	c.write(1, resp)
	for {
		p := c.read()
		switch p.data[0] {
		case 0x00:
			return c
		case 0xFE: // auth switch: the empty password's answer is empty
			c.write(p.seq+1, nil)
		default:
			t.Fatalf("authentication: %q", p.data)
		}
	}
}

func (c *rawClient) read() packet {
	c.t.Helper()
	p, err := readPacket(c.r, 1<<30)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return p
}

func (c *rawClient) write(seq byte, data []byte) {
	c.t.Helper()
	if err := writePacket(c.conn, packet{seq: seq, data: data}); err != nil {
		c.t.Fatal(err)
	}
}

// response reads one command's response; it returns its rows and the final state.
func (c *rawClient) response(kind respKind) ([][]byte, *response) {
	c.t.Helper()
	r := newResponse(kind, c.caps&uint64(mysql.CLIENT_DEPRECATE_EOF) != 0)
	var rows [][]byte
	for !r.done {
		p := c.read()
		if err := r.feed(p.data); err != nil {
			c.t.Fatal(err)
		}
		if r.isErr {
			c.t.Fatalf("ERR: %v", parseErr(p.data))
		}
		if r.row {
			rows = append(rows, p.data)
		}
	}
	return rows, r
}

func (c *rawClient) query(q string) [][]byte {
	c.t.Helper()
	c.write(0, append([]byte{mysql.COM_QUERY}, q...))
	rows, _ := c.response(respResult)
	return rows
}

// execute is COM_STMT_EXECUTE of stmt with INT parameters.
func execute(stmt uint32, flags byte, params ...int32) []byte {
	b := []byte{mysql.COM_STMT_EXECUTE}
	b = binary.LittleEndian.AppendUint32(b, stmt)
	b = append(b, flags, 1, 0, 0, 0)
	if len(params) > 0 {
		b = append(b, make([]byte, (len(params)+7)/8)...) // NULL bitmap
		b = append(b, 1)                                  // types follow
		for range params {
			b = append(b, mysql.MYSQL_TYPE_LONG, 0)
		}
		for _, v := range params {
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		}
	}
	return b
}

// TestRawProtocol drives the gateway with the capabilities of MariaDB Connector/J (JDBC)
// and with the oldest framing (EOF packets): capability masking, pipelined prepare and
// execute of statement -1, bulk execution, cursors with COM_STMT_FETCH, multi-results.
func TestRawProtocol(t *testing.T) {
	for _, tc := range []struct {
		name string
		caps uint64
	}{
		{"jdbc", jdbcCaps},
		{"eof packets", jdbcCaps &^ uint64(mysql.CLIENT_DEPRECATE_EOF) &^ mariadbBulkUnitResults},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			c := dialRaw(t, f.gw.Addr(), f.db, tc.caps)
			for _, masked := range []uint64{uint64(mysql.CLIENT_COMPRESS), uint64(mysql.CLIENT_LOCAL_FILES), uint64(mysql.CLIENT_SSL), mariadbCacheMetadata} {
				if c.greetC&masked != 0 {
					t.Fatalf("greeting offers capability %#x", masked)
				}
			}
			if got := c.query("SELECT 1, 'two', NULL UNION SELECT 3, 'four', 5"); len(got) != 2 {
				t.Fatalf("rows %q", got)
			}
			if got := c.query("SELECT 1; SELECT 2, 3; DO 1"); len(got) != 2 {
				t.Fatalf("multi-result rows %q", got)
			}
			var id uint32
			if row, err := textRow(c.query("SELECT CONNECTION_ID()")[0]); err == nil {
				id = uint32(atoi(row[0]))
			}

			// Connector/J pipelines PREPARE and EXECUTE of "the last prepared" (-1).
			var both bytes.Buffer
			_ = writePacket(&both, packet{data: append([]byte{mysql.COM_STMT_PREPARE}, "UPDATE acct SET bal = ? WHERE id = ?"...)})
			_ = writePacket(&both, packet{data: execute(0xFFFFFFFF, 0, 55, 1)})
			if _, err := c.conn.Write(both.Bytes()); err != nil {
				t.Fatal(err)
			}
			_, prep := c.response(respPrepare)
			c.response(respResult)
			f.want(f.rec.take(id), f.committed(f.acct())...)
			if got := f.balance(1); got != 55 {
				t.Fatalf("balance %d, want 55", got)
			}

			// Bulk execution: two parameter rows in one command.
			bulk := []byte{comStmtBulkExecute}
			bulk = binary.LittleEndian.AppendUint32(bulk, prep.stmtID)
			bulk = append(bulk, 128, 0, mysql.MYSQL_TYPE_LONG, 0, mysql.MYSQL_TYPE_LONG, 0) // types sent
			for _, row := range [][2]int32{{11, 1}, {22, 2}} {
				for _, v := range row {
					bulk = binary.LittleEndian.AppendUint32(append(bulk, 0), uint32(v))
				}
			}
			c.write(0, bulk)
			c.response(respResult)
			f.want(f.rec.take(id), f.committed(f.acct())...)
			if got := f.balance(2); got != 22 {
				t.Fatalf("balance %d after bulk, want 22", got)
			}

			// A read-only cursor: rows come with COM_STMT_FETCH.
			c.write(0, append([]byte{mysql.COM_STMT_PREPARE}, "SELECT id, bal FROM acct ORDER BY id"...))
			_, sel := c.response(respPrepare)
			c.write(0, execute(sel.stmtID, 1))
			if rows, _ := c.response(respResult); len(rows) != 0 {
				t.Fatalf("cursor sent %d rows at once", len(rows))
			}
			fetch := binary.LittleEndian.AppendUint32([]byte{mysql.COM_STMT_FETCH}, sel.stmtID)
			c.write(0, binary.LittleEndian.AppendUint32(fetch, 10))
			if rows, _ := c.response(respRows); len(rows) != 2 {
				t.Fatalf("fetched %d rows, want 2", len(rows))
			}
			f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "ended", Tables: f.acct()}) // execute, not fetch
			c.write(0, binary.LittleEndian.AppendUint32([]byte{mysql.COM_STMT_CLOSE}, sel.stmtID))
			c.write(0, []byte{mysql.COM_PING})
			c.response(respResult)
			c.write(0, []byte{mysql.COM_RESET_CONNECTION})
			c.response(respResult)
			c.write(0, append([]byte{mysql.COM_INIT_DB}, f.db...))
			c.response(respResult)
			c.write(0, []byte{mysql.COM_STATISTICS})
			c.response(respOne)
			c.write(0, append([]byte{mysql.COM_FIELD_LIST}, "acct\x00"...))
			c.response(respFields)
			// COM_CHANGE_USER rolls back an open transaction.
			c.query("BEGIN")
			c.query("UPDATE acct SET bal = 0 WHERE id = 1")
			change := append([]byte{mysql.COM_CHANGE_USER}, "root\x00\x00"+f.db+"\x00\x2d\x00mysql_native_password\x00\x00"...)
			c.write(0, change)
			for p := c.read(); p.data[0] != 0x00; p = c.read() {
				if p.data[0] != 0xFE {
					t.Fatalf("change user: %q", p.data)
				}
				c.write(p.seq+1, nil)
			}
			f.want(f.rec.take(id), call{Hook: "acquire", Tables: f.acct()}, call{Hook: "ended", Tables: f.acct()})
			if got := f.balance(1); got != 11 {
				t.Fatalf("balance %d, want 11 (rolled back)", got)
			}
			if id2 := uint32(atoi(string(c.query("SELECT CONNECTION_ID()")[0][1:]))); id2 != id {
				t.Fatalf("connection id %d after change user, was %d", id2, id)
			}
			c.query("UPDATE acct SET bal = 56 WHERE id = 1") // the database is still current
			f.want(f.rec.take(id), f.committed(f.acct())...)
			c.write(0, []byte{mysql.COM_QUIT})
		})
	}
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}

// TestHostileClient: malformed packets close their connection with an ERR; the gateway
// serves on.
func TestHostileClient(t *testing.T) {
	f := newFixture(t)
	small := startGateway(t, Config{Backend: f.site.Addr(), MaxPacket: 1 << 20, Hooks: f.rec})
	for _, tc := range []struct {
		name string
		addr string
		send []byte // after the handshake
	}{
		{"empty command", f.gw.Addr(), []byte{0, 0, 0, 0}},
		{"truncated packet", f.gw.Addr(), []byte{0xFF, 0xFF, 0x00, 0, mysql.COM_QUERY, 'S'}},
		{"over MaxPacket", small.Addr(), []byte{0x00, 0x00, 0x20, 0, mysql.COM_QUERY}},
		{"bad fragment sequence", f.gw.Addr(), append(append([]byte{0xFF, 0xFF, 0xFF, 0, mysql.COM_QUERY}, bytes.Repeat([]byte{' '}, maxFragment-1)...), 1, 0, 0, 7, '1')},
		{"execute without id", f.gw.Addr(), []byte{2, 0, 0, 0, mysql.COM_STMT_EXECUTE, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dialRaw(t, tc.addr, f.db, jdbcCaps)
			if _, err := c.conn.Write(tc.send); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(tc.name, "truncated") {
				_ = c.conn.(*net.TCPConn).CloseWrite()
			}
			rest, err := io.ReadAll(c.r)
			if err != nil {
				t.Fatalf("gateway did not close: %v", err)
			}
			if tc.name != "truncated packet" && (len(rest) < 5 || rest[4] != 0xFF) {
				t.Fatalf("no ERR before closing: %q", rest)
			}
		})
	}
	// Still serving, hooks and all.
	db := f.open(nil)
	if _, err := db.ExecContext(context.Background(), "UPDATE acct SET bal = 1 WHERE id = 1"); err != nil {
		t.Fatal(err)
	}
}

// TestHostileBackend: a backend that breaks the protocol closes the client's connection
// with an ERR, not the gateway.
func TestHostileBackend(t *testing.T) {
	for _, tc := range []struct {
		name  string
		hello []byte   // greeting payload
		reply [][]byte // payloads answering the first command
	}{
		{"garbage greeting", []byte{9, 'x'}, nil},
		{"truncated greeting", []byte{10, '5', 0, 1, 2}, nil},
		{"zero columns", nil, [][]byte{{0x00 + 0}}},
		{"huge column count", nil, [][]byte{{0xFD, 0xFF, 0xFF, 0xFF}}},
		{"EOF missing", nil, [][]byte{{1}, {3, 'd', 'e', 'f'}, {1, 'x'}}},
		{"bad OK", nil, [][]byte{{0x00, 0xFE}}},
		{"local infile", nil, [][]byte{{0xFB, 'f'}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := fakeBackend(t, tc.hello, tc.reply)
			gw := startGateway(t, Config{Backend: addr, Hooks: &recorder{}})
			nc, err := net.Dial("tcp", gw.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(nc)
			if tc.hello == nil {
				if _, err := readPacket(r, 1<<20); err != nil { // greeting
					t.Fatal(err)
				}
				resp := append(make([]byte, 32), "root\x00\x00"...)
				binary.LittleEndian.PutUint32(resp, uint32(mysql.CLIENT_PROTOCOL_41|mysql.CLIENT_SECURE_CONNECTION))
				_ = writePacket(nc, packet{seq: 1, data: resp})
				if p, err := readPacket(r, 1<<20); err != nil || p.data[0] != 0 { // OK
					t.Fatalf("auth: %v %q", err, p.data)
				}
				_ = writePacket(nc, packet{data: []byte{mysql.COM_QUERY, '1'}})
			}
			rest, _ := io.ReadAll(r)
			if !bytes.Contains(rest, []byte{0xFF}) {
				t.Fatalf("no ERR: %q", rest)
			}
		})
	}
}

// fakeBackend serves one connection: greeting hello (a valid one if nil), OK to any
// handshake response, then reply to the first command.
func fakeBackend(t *testing.T, hello []byte, reply [][]byte) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		defer nc.Close()
		if hello == nil {
			hello = append([]byte{10}, "10.11.0-fake\x00"...)
			hello = append(hello, 7, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 0)
			caps := uint32(mysql.CLIENT_PROTOCOL_41 | mysql.CLIENT_SECURE_CONNECTION | mysql.CLIENT_PLUGIN_AUTH)
			hello = append(hello, byte(caps), byte(caps>>8), 45, 2, 0, byte(caps>>16), byte(caps>>24), 21)
			hello = append(hello, make([]byte, 10)...)
			hello = append(hello, "123456789012\x00mysql_native_password\x00"...)
		}
		_ = writePacket(nc, packet{data: hello})
		r := bufio.NewReader(nc)
		if _, err := readPacket(r, 1<<20); err != nil {
			return
		}
		_ = writePacket(nc, packet{seq: 2, data: []byte{0, 0, 0, 2, 0, 0, 0}})
		if _, err := readPacket(r, 1<<20); err != nil {
			return
		}
		for i, p := range reply {
			_ = writePacket(nc, packet{seq: byte(i + 1), data: p})
		}
		_, _ = io.Copy(io.Discard, r)
	}()
	return ln.Addr().String()
}
