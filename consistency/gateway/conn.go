package gateway

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime/debug"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"go.uber.org/zap"
)

// conn is one client connection and its backend connection. One goroutine (serve) runs
// the commands; two pumps read packets from each side into channels, so a side that goes
// away is noticed at once, even between commands.
type conn struct {
	g     *Gateway
	hooks Hooks
	log   *zap.Logger
	ctx   context.Context // Serve's: the connection closes at its next command once it ends
	id    uint32          // the backend's connection id

	client, server         net.Conn
	cw, sw                 *bufio.Writer
	fromClient, fromServer chan packet
	clientErr, serverErr   error           // why a pump stopped, set before its channel closes
	clientCtx              context.Context // ends when the client's pump stops: Acquire's
	clientGone             context.CancelFunc
	stopped                chan struct{} // closed at the end: pumps stop
	closeOnce              sync.Once
	sockMu                 sync.Mutex // guards client and server against closeSockets
	wErr                   error      // first error writing to the client; later writes are dropped
	seq                    byte       // the sequence id the client expects next
	caps                   uint64     // negotiated capabilities (MariaDB's in the upper 32 bits)

	session
}

func newConn(ctx context.Context, g *Gateway, nc net.Conn) *conn {
	c := &conn{g: g, hooks: g.cfg.Hooks, ctx: ctx, client: nc, stopped: make(chan struct{}),
		fromClient: make(chan packet, 1), fromServer: make(chan packet, 16)}
	c.clientCtx, c.clientGone = context.WithCancel(ctx)
	c.log = g.log.With(zap.String("client", nc.RemoteAddr().String()))
	c.session.reset()
	return c
}

// serve runs the connection to its end.
func (c *conn) serve() {
	m := c.g.metrics
	m.accepted.Inc()
	m.conns.Inc()
	defer m.conns.Dec()
	defer c.finish()
	if err := c.handshake(); err != nil {
		m.errors.WithLabelValues("handshake").Inc()
		c.log.Info("gateway: handshake failed", zap.Error(err))
		return
	}
	c.log = c.log.With(zap.Uint32("conn", c.id))
	c.run()
}

// run relays commands until the connection ends, then says why.
func (c *conn) run() {
	err := c.loop()
	switch {
	case err == nil, errors.Is(err, errQuit), errors.Is(err, io.EOF), errors.Is(err, net.ErrClosed):
		c.log.Debug("gateway: connection closed", zap.Error(err))
	case errors.Is(err, ErrProtocol), errors.Is(err, ErrTooLarge):
		c.g.metrics.errors.WithLabelValues("protocol").Inc()
		c.toClient(errPacket(c.seq, &SQLError{Code: 1153, State: "08S01", Message: err.Error()}))
		c.flush()
		c.log.Warn("gateway: connection closed", zap.Error(err))
	default:
		c.g.metrics.errors.WithLabelValues("backend").Inc()
		c.log.Info("gateway: connection closed", zap.Error(err))
	}
}

// finish (deferred) ends the connection: a panic ends only this connection; the sockets
// are closed, then an open transaction is ended (MariaDB rolls it back).
func (c *conn) finish() {
	if r := recover(); r != nil {
		c.g.metrics.errors.WithLabelValues("panic").Inc()
		c.log.Error("gateway: connection panicked", zap.Any("panic", r), zap.ByteString("stack", debug.Stack()))
	}
	c.closeSockets()
	defer func() {
		if r := recover(); r != nil {
			c.g.metrics.errors.WithLabelValues("panic").Inc()
			c.log.Error("gateway: Ended panicked", zap.Any("panic", r))
		}
	}()
	c.endTxn()
}

func (c *conn) closeSockets() {
	c.closeOnce.Do(func() {
		close(c.stopped)
		c.clientGone()
		c.sockMu.Lock()
		defer c.sockMu.Unlock()
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

// handshake relays the greeting, the client's handshake response (after TLS if asked
// for) and the authentication exchange, masking the capabilities the gateway does not
// parse. Then the pumps run.
func (c *conn) handshake() error {
	deadline := time.Now().Add(c.g.cfg.DialTimeout)
	_ = c.client.SetDeadline(deadline)
	sr, serverCaps, err := c.greet(deadline)
	if err != nil {
		return err
	}
	resp, off, err := c.readHandshakeResponse()
	if err != nil {
		_ = writePacket(c.client, errPacket(2+off, &SQLError{Code: 1043, State: "08S01", Message: err.Error()}))
		return err
	}
	hr, _ := parseHandshakeResponse(resp.data)
	asked := hr.caps.get(resp.data) & allowedCaps &^ uint64(mysql.CLIENT_SSL)
	hr.caps.set(resp.data, asked)
	c.caps = asked & serverCaps
	c.db, c.dbKnown = hr.db, true
	resp.seq -= off // the backend saw no SSLRequest
	c.cw, c.sw = bufio.NewWriterSize(c.client, 64<<10), bufio.NewWriterSize(c.server, 64<<10)
	if err := c.send(resp); err != nil {
		return err
	}
	go c.pump(bufio.NewReader(c.client), c.fromClient, &c.clientErr, c.clientGone)
	go c.pump(sr, c.fromServer, &c.serverErr, func() {})
	ok, err := c.relayAuth(off)
	c.flush()
	if err != nil {
		return err
	}
	if !ok {
		return errors.New("authentication refused by the backend")
	}
	_ = c.client.SetDeadline(time.Time{})
	return c.server.SetDeadline(time.Time{})
}

// greet dials the backend and relays its greeting, with the capabilities offered masked.
// It returns the backend's reader and capabilities.
func (c *conn) greet(deadline time.Time) (*bufio.Reader, uint64, error) {
	d := net.Dialer{Deadline: deadline}
	server, err := d.DialContext(c.ctx, "tcp", c.g.cfg.Backend)
	if err != nil {
		_ = writePacket(c.client, errPacket(0, &SQLError{Code: 2003, State: "HY000", Message: "gateway: backend unreachable"}))
		return nil, 0, fmt.Errorf("dial backend: %w", err)
	}
	c.sockMu.Lock()
	c.server = server
	c.sockMu.Unlock()
	select {
	case <-c.stopped: // closed by force while dialling
		server.Close()
		return nil, 0, net.ErrClosed
	default:
	}
	_ = server.SetDeadline(deadline)
	sr := bufio.NewReader(server)
	hello, err := readPacket(sr, c.g.cfg.MaxPacket)
	if err != nil {
		return nil, 0, fmt.Errorf("read greeting: %w", err)
	}
	if len(hello.data) > 0 && hello.data[0] == 0xFF { // refused: too many connections, ...
		_ = writePacket(c.client, hello)
		return nil, 0, fmt.Errorf("backend refused: %w", parseErr(hello.data))
	}
	gr, err := parseGreeting(hello.data)
	if err != nil {
		_ = writePacket(c.client, errPacket(0, &SQLError{Code: 2027, State: "HY000", Message: err.Error()}))
		return nil, 0, err
	}
	c.id = gr.connID
	serverCaps := gr.caps.get(hello.data)
	offered := serverCaps & allowedCaps
	if c.g.cfg.TLS != nil {
		offered |= uint64(mysql.CLIENT_SSL)
	} else {
		offered &^= uint64(mysql.CLIENT_SSL)
	}
	gr.caps.set(hello.data, offered)
	return sr, serverCaps, writePacket(c.client, hello)
}

// readHandshakeResponse reads the client's handshake response, doing the TLS handshake
// first if the client sends an SSLRequest; off is 1 after TLS (the SSLRequest took a
// sequence id the backend never saw). It reads without buffering: TLS bytes follow an
// SSLRequest at once.
func (c *conn) readHandshakeResponse() (packet, byte, error) {
	p, err := readPacket(c.client, c.g.cfg.MaxPacket)
	if err != nil {
		return p, 0, fmt.Errorf("read handshake response: %w", err)
	}
	hr, err := parseHandshakeResponse(p.data)
	if err != nil || !hr.sslRequest {
		return p, 0, err
	}
	if c.g.cfg.TLS == nil {
		return p, 0, fmt.Errorf("%w: SSLRequest but TLS is not configured", ErrProtocol)
	}
	tc := tls.Server(c.client, c.g.cfg.TLS)
	if err := tc.HandshakeContext(c.ctx); err != nil {
		return p, 0, fmt.Errorf("tls handshake: %w", err)
	}
	c.sockMu.Lock()
	c.client = tc
	c.sockMu.Unlock()
	if p, err = readPacket(tc, c.g.cfg.MaxPacket); err != nil {
		return p, 0, fmt.Errorf("read handshake response: %w", err)
	}
	if hr, err = parseHandshakeResponse(p.data); err == nil && hr.sslRequest {
		err = fmt.Errorf("%w: second SSLRequest", ErrProtocol)
	}
	return p, 1, err
}

// relayAuth relays the authentication exchange after a handshake response or
// COM_CHANGE_USER until the backend's OK (true) or ERR (false). The sides take turns; the
// one exception is caching_sha2_password's "fast auth ok" (0x01 0x03), which the server
// follows itself.
func (c *conn) relayAuth(off byte) (bool, error) {
	for {
		p, err := c.recv()
		if err != nil {
			return false, err
		}
		if len(p.data) == 0 {
			return false, fmt.Errorf("%w: empty authentication packet", ErrProtocol)
		}
		p.seq += off
		c.toClient(p) // the OK or ERR is flushed by the caller, after its bookkeeping
		switch {
		case p.data[0] == 0x00:
			if st, ok := eofStatus(p.data); ok {
				c.noteStatus(st)
			}
			return true, c.wErr
		case p.data[0] == 0xFF:
			return false, c.wErr
		case len(p.data) == 2 && p.data[0] == 0x01 && p.data[1] == 0x03:
			continue
		}
		if c.flush(); c.wErr != nil {
			return false, c.wErr
		}
		q, ok := <-c.fromClient
		if !ok {
			return false, fmt.Errorf("client: %w", c.clientErr)
		}
		q.seq -= off
		if err := c.send(q); err != nil {
			return false, err
		}
	}
}

// pump reads packets into ch until the connection fails; then it records why and closes ch.
func (c *conn) pump(r io.Reader, ch chan<- packet, why *error, done func()) {
	defer done()
	for {
		p, err := readPacket(r, c.g.cfg.MaxPacket)
		if err != nil {
			*why = err
			close(ch)
			return
		}
		select {
		case ch <- p:
		case <-c.stopped:
			*why = net.ErrClosed
			close(ch)
			return
		}
	}
}

// loop relays commands until the client quits or either side fails.
func (c *conn) loop() error {
	for {
		c.flush()
		if c.wErr != nil {
			return c.wErr
		}
		select {
		case p, ok := <-c.fromClient:
			if !ok {
				c.seq = 1 // as if answering a new command
				return c.clientErr
			}
			c.seq = p.next()
			if err := c.command(p); err != nil {
				return err
			}
		case p, ok := <-c.fromServer:
			if !ok {
				return fmt.Errorf("backend: %w", c.serverErr)
			}
			c.toClient(p) // say, the ERR of a connection killed while idle
			c.flush()
			return errors.New("backend: packet between commands")
		case <-c.ctx.Done():
			return nil
		}
	}
}

// command relays one client command and its response.
func (c *conn) command(p packet) error {
	if len(p.data) == 0 {
		return fmt.Errorf("%w: empty command packet", ErrProtocol)
	}
	cmd := p.data[0]
	c.g.metrics.commands.WithLabelValues(commandName(cmd)).Inc()
	switch cmd {
	case mysql.COM_QUIT:
		_ = c.send(p)
		return errQuit
	case mysql.COM_STMT_SEND_LONG_DATA: // no response
		return c.send(p)
	case mysql.COM_STMT_CLOSE: // no response
		if len(p.data) >= 5 {
			delete(c.stmts, binary.LittleEndian.Uint32(p.data[1:]))
		}
		return c.send(p)
	case mysql.COM_BINLOG_DUMP, mysql.COM_BINLOG_DUMP_GTID, mysql.COM_REGISTER_SLAVE, mysql.COM_TABLE_DUMP:
		return c.refuse(p, &SQLError{Code: 1047, State: "08S01", Message: "gateway: replication commands are not relayed; connect to MariaDB directly"})
	case mysql.COM_CHANGE_USER:
		return c.changeUser(p)
	}
	var info stmtInfo
	if c.hooks != nil {
		var err error
		if info, err = c.inspect(p); err != nil {
			return err
		}
		refusal, err := c.acquire(info.tables)
		if err != nil {
			return err
		}
		if refusal != nil {
			return c.refuse(p, refusal)
		}
	}
	if !keepsGTID(cmd) {
		c.gtidFresh = false
	}
	if err := c.send(p); err != nil {
		return err
	}
	r, err := c.relay(kindOf(cmd), info.ends)
	if err != nil {
		return err
	}
	c.after(p, r, info)
	return nil
}

// changeUser relays COM_CHANGE_USER: a new authentication that resets the session (an open
// transaction rolls back, prepared statements are closed).
func (c *conn) changeUser(p packet) error {
	db, dbOK := changeUserDB(p.data, c.caps)
	c.gtidFresh = false
	if err := c.send(p); err != nil {
		return err
	}
	ok, err := c.relayAuth(0)
	c.endTxn()
	c.session.reset()
	c.db, c.dbKnown = db, ok && dbOK
	return err
}

// refuse answers p with an ERR instead of relaying it. A refused COM_STMT_EXECUTE's
// statement is reset at the backend, so long data sent for it is not appended to next time.
func (c *conn) refuse(p packet, why error) error {
	c.toClient(errPacket(p.next(), sqlError(why)))
	if p.data[0] == mysql.COM_STMT_EXECUTE {
		id := binary.LittleEndian.Uint32(p.data[1:])
		if id == 0xFFFFFFFF {
			id = c.lastStmt
		}
		var refused *SQLError
		if _, err := c.own(binary.LittleEndian.AppendUint32([]byte{mysql.COM_STMT_RESET}, id)); err != nil && !errors.As(err, &refused) {
			return err
		}
	}
	return c.endIfIdle()
}

// relay forwards the response to the command just sent, tracking the transaction state.
// When a transaction with acquired tables ends (an OK/EOF without SERVER_STATUS_IN_TRANS,
// or an ERR, which may have rolled it back), the rest of the response is held until the
// hooks have been told (settle). holdAll holds all of it: COMMIT AND CHAIN and BEGIN commit
// the open transaction and start the next in one statement, so no status shows the end.
func (c *conn) relay(kind respKind, holdAll bool) (*response, error) {
	r := newResponse(kind, c.caps&uint64(mysql.CLIENT_DEPRECATE_EOF) != 0)
	var held []packet
	holding := holdAll && c.txn != nil
	for !r.done {
		p, err := c.recv()
		if err != nil {
			return r, err
		}
		if err := r.feed(p.data); err != nil {
			return r, err
		}
		switch {
		case r.hasStatus:
			c.noteStatus(r.status)
		case r.isErr:
			c.stateKnown = false
		}
		if !holding && c.txn != nil && (r.isErr || r.hasStatus && !c.inTrans) {
			holding = true
		}
		if holding {
			held = append(held, p)
			continue
		}
		c.toClient(p)
		if len(c.fromServer) == 0 {
			c.flush()
		}
	}
	if holding {
		return r, c.settle(held)
	}
	return r, nil
}

// recv is the backend's next packet.
func (c *conn) recv() (packet, error) {
	p, ok := <-c.fromServer
	if !ok {
		return p, fmt.Errorf("backend: %w", c.serverErr)
	}
	return p, nil
}

// send writes p to the backend.
func (c *conn) send(p packet) error {
	if err := writePacket(c.sw, p); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	if err := c.sw.Flush(); err != nil {
		return fmt.Errorf("backend: %w", err)
	}
	return nil
}

// toClient writes p to the client (buffered). A failed write is remembered and later ones
// dropped: the response is still read to its end so the hooks learn how it ended.
func (c *conn) toClient(p packet) {
	if c.wErr == nil {
		c.wErr = writePacket(c.cw, p)
	}
	c.seq = p.next()
}

func (c *conn) flush() {
	if c.wErr == nil && c.cw != nil {
		c.wErr = c.cw.Flush()
	}
}

func kindOf(cmd byte) respKind {
	switch cmd {
	case mysql.COM_STMT_PREPARE:
		return respPrepare
	case mysql.COM_STMT_FETCH:
		return respRows
	case mysql.COM_FIELD_LIST:
		return respFields
	case mysql.COM_STATISTICS:
		return respOne
	}
	return respResult
}

// keepsGTID tells commands that cannot commit a transaction.
func keepsGTID(cmd byte) bool {
	switch cmd {
	case mysql.COM_PING, mysql.COM_STMT_PREPARE, mysql.COM_STMT_RESET, mysql.COM_INIT_DB,
		mysql.COM_STATISTICS, mysql.COM_FIELD_LIST:
		return true
	}
	return false
}

var commandNames = map[byte]string{
	mysql.COM_QUIT: "quit", mysql.COM_INIT_DB: "init_db", mysql.COM_QUERY: "query",
	mysql.COM_FIELD_LIST: "field_list", mysql.COM_STATISTICS: "statistics", mysql.COM_PING: "ping",
	mysql.COM_CHANGE_USER: "change_user", mysql.COM_STMT_PREPARE: "stmt_prepare",
	mysql.COM_STMT_EXECUTE: "stmt_execute", mysql.COM_STMT_SEND_LONG_DATA: "stmt_send_long_data",
	mysql.COM_STMT_CLOSE: "stmt_close", mysql.COM_STMT_RESET: "stmt_reset", mysql.COM_SET_OPTION: "set_option",
	mysql.COM_STMT_FETCH: "stmt_fetch", mysql.COM_RESET_CONNECTION: "reset_connection",
	comStmtBulkExecute: "stmt_bulk_execute",
}

func commandName(cmd byte) string {
	if n, ok := commandNames[cmd]; ok {
		return n
	}
	return "other"
}
