package gateway

import (
	"encoding/binary"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// respKind says what response a command gets, so the gateway knows where it ends.
type respKind int

const (
	// respResult: OK, ERR or a result set (text or binary rows), repeated while the last
	// packet of each carries SERVER_MORE_RESULTS_EXISTS. COM_QUERY, COM_STMT_EXECUTE,
	// COM_STMT_BULK_EXECUTE, COM_PING, COM_INIT_DB, COM_STMT_RESET, ... and unknown
	// commands.
	respResult respKind = iota
	// respPrepare: COM_STMT_PREPARE's OK (statement id, column and parameter counts)
	// and its definitions, or ERR.
	respPrepare
	// respRows: COM_STMT_FETCH's rows up to EOF, or ERR.
	respRows
	// respFields: COM_FIELD_LIST's column definitions up to EOF, or ERR.
	respFields
	// respOne: any single packet (COM_STATISTICS' status string).
	respOne
)

type phase int

const (
	phStart       phase = iota
	phColumns           // column definitions of a result set
	phColumnsEOF        // EOF after them (without CLIENT_DEPRECATE_EOF)
	phRows              // rows up to EOF/OK
	phParams            // parameter definitions of a prepare response
	phParamsEOF         // EOF after them
	phPrepColumns       // column definitions of a prepare response
	phPrepColsEOF       // EOF after them
)

// maxColumns bounds a column count (MariaDB allows 4096 columns, 65535 parameters).
const maxColumns = 1 << 16

// response follows one command's response packet by packet. After each feed, the fields
// describe the packet just fed; done is set by the packet that ends the response.
type response struct {
	kind         respKind
	deprecateEOF bool // CLIENT_DEPRECATE_EOF negotiated: no EOF after definitions, OK ends rows

	phase     phase
	left      uint64 // definitions left in this phase
	prepCols  uint64 // columns still to come after a prepare's parameters
	stmtID    uint32 // of a prepare response's OK
	status    uint16 // server status of this packet, if hasStatus
	hasStatus bool   // the packet was an OK or EOF ending a result
	isErr     bool   // the packet was an ERR (it ends the response)
	row       bool   // the packet was a row
	done      bool
	sawErr    bool // some packet of the response was an ERR
}

func newResponse(kind respKind, deprecateEOF bool) *response {
	r := &response{kind: kind, deprecateEOF: deprecateEOF}
	if kind == respRows || kind == respFields {
		r.phase = phRows
	}
	return r
}

// feed takes the next packet's payload; an error means the backend broke the protocol.
func (r *response) feed(b []byte) error {
	r.hasStatus, r.isErr, r.row = false, false, false
	if r.done {
		return fmt.Errorf("%w: packet after the end of the response", ErrProtocol)
	}
	if len(b) == 0 {
		return fmt.Errorf("%w: empty packet in a response", ErrProtocol)
	}
	if r.kind == respOne {
		r.done = true
		return nil
	}
	if b[0] == 0xFF {
		if !isProgress(b) {
			r.isErr, r.sawErr, r.done = true, true, true
		}
		return nil
	}
	switch r.phase {
	case phStart:
		return r.start(b)
	case phColumns, phParams, phPrepColumns:
		r.left--
		if r.left == 0 {
			r.afterDefinitions()
		}
		return nil
	case phColumnsEOF, phParamsEOF, phPrepColsEOF:
		if !r.isEOF(b) {
			return fmt.Errorf("%w: expected EOF after definitions, got 0x%02x", ErrProtocol, b[0])
		}
		return r.afterEOF(b)
	case phRows:
		if r.isEOF(b) {
			return r.terminal(b)
		}
		r.row = true
	}
	return nil
}

func (r *response) start(b []byte) error {
	switch r.kind {
	case respPrepare:
		return r.prepareOK(b)
	}
	switch {
	case b[0] == 0x00, b[0] == 0xFE && len(b) < maxFragment:
		return r.terminal(b)
	case b[0] == 0xFB:
		return fmt.Errorf("%w: LOAD DATA LOCAL INFILE is not supported", ErrProtocol)
	}
	n, used, ok := lenenc(b)
	if !ok || used != len(b) || n == 0 || n > maxColumns {
		return fmt.Errorf("%w: bad column count packet", ErrProtocol)
	}
	r.phase, r.left = phColumns, n
	return nil
}

func (r *response) prepareOK(b []byte) error {
	if b[0] != 0x00 || len(b) < 12 {
		return fmt.Errorf("%w: bad prepare response", ErrProtocol)
	}
	r.stmtID = binary.LittleEndian.Uint32(b[1:5])
	cols, params := uint64(binary.LittleEndian.Uint16(b[5:7])), uint64(binary.LittleEndian.Uint16(b[7:9]))
	r.prepCols = cols
	if params > 0 {
		r.phase, r.left = phParams, params
		return nil
	}
	r.prepColumns()
	return nil
}

func (r *response) prepColumns() {
	if r.prepCols == 0 {
		r.done = true
		return
	}
	r.phase, r.left, r.prepCols = phPrepColumns, r.prepCols, 0
}

func (r *response) afterDefinitions() {
	switch {
	case !r.deprecateEOF && r.phase == phColumns:
		r.phase = phColumnsEOF
	case !r.deprecateEOF && r.phase == phParams:
		r.phase = phParamsEOF
	case !r.deprecateEOF:
		r.phase = phPrepColsEOF
	case r.phase == phColumns:
		r.phase = phRows
	case r.phase == phParams:
		r.prepColumns()
	default:
		r.done = true
	}
}

func (r *response) afterEOF(b []byte) error {
	switch r.phase {
	case phColumnsEOF:
		st, ok := eofStatus(b)
		if !ok {
			return fmt.Errorf("%w: bad EOF packet", ErrProtocol)
		}
		if st&mysql.SERVER_STATUS_CURSOR_EXISTS != 0 { // rows come with COM_STMT_FETCH
			return r.terminal(b)
		}
		r.phase = phRows
	case phParamsEOF:
		r.prepColumns()
	default:
		r.done = true
	}
	return nil
}

// terminal handles the OK/EOF that ends a result; it may announce more results.
func (r *response) terminal(b []byte) error {
	st, ok := eofStatus(b)
	if !ok {
		return fmt.Errorf("%w: bad OK/EOF packet", ErrProtocol)
	}
	r.status, r.hasStatus = st, true
	if r.kind == respResult && st&mysql.SERVER_MORE_RESULTS_EXISTS != 0 {
		r.phase = phStart
		return nil
	}
	r.done = true
	return nil
}

// isEOF tells an EOF (or, with CLIENT_DEPRECATE_EOF, an OK with header 0xFE) from a row
// that happens to start with 0xFE (a length of 2^24 or more, so a packet that long).
func (r *response) isEOF(b []byte) bool {
	return b[0] == 0xFE && (len(b) < 9 || r.deprecateEOF && len(b) < maxFragment)
}

// eofStatus is the server status of an OK (0x00 or 0xFE header) or a 5-byte EOF packet.
func eofStatus(b []byte) (uint16, bool) {
	if len(b) == 5 && b[0] == 0xFE {
		return binary.LittleEndian.Uint16(b[3:5]), true
	}
	i := 1
	for range 2 { // affected rows, last insert id
		_, used, ok := lenenc(b[i:])
		if !ok || b[i] == 0xFB {
			return 0, false
		}
		i += used
	}
	if len(b) < i+2 {
		return 0, false
	}
	return binary.LittleEndian.Uint16(b[i:]), true
}
