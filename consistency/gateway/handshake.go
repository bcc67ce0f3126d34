package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
)

// MariaDB's extended capabilities, sent in the upper 32 bits (a separate field of the
// greeting and handshake response when CLIENT_MYSQL, bit 0, is clear).
const (
	mariadbProgress        = 1 << 32
	mariadbComMulti        = 1 << 33
	mariadbBulk            = 1 << 34
	mariadbExtendedMeta    = 1 << 35
	mariadbCacheMetadata   = 1 << 36
	mariadbBulkUnitResults = 1 << 37

	comStmtBulkExecute = 0xFA
)

// allowedCaps are the capabilities the gateway understands. Masked: CLIENT_COMPRESS,
// CLIENT_LOCAL_FILES, MySQL 8's optional metadata, zstd, query attributes, multi-factor
// auth and capability extension; MariaDB's COM_MULTI and metadata caching.
const allowedCaps = uint64(mysql.CLIENT_LONG_PASSWORD|mysql.CLIENT_FOUND_ROWS|mysql.CLIENT_LONG_FLAG|
	mysql.CLIENT_CONNECT_WITH_DB|mysql.CLIENT_NO_SCHEMA|mysql.CLIENT_ODBC|mysql.CLIENT_IGNORE_SPACE|
	mysql.CLIENT_PROTOCOL_41|mysql.CLIENT_INTERACTIVE|mysql.CLIENT_SSL|mysql.CLIENT_IGNORE_SIGPIPE|
	mysql.CLIENT_TRANSACTIONS|mysql.CLIENT_RESERVED|mysql.CLIENT_SECURE_CONNECTION|
	mysql.CLIENT_MULTI_STATEMENTS|mysql.CLIENT_MULTI_RESULTS|mysql.CLIENT_PS_MULTI_RESULTS|
	mysql.CLIENT_PLUGIN_AUTH|mysql.CLIENT_CONNECT_ATTRS|mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA|
	mysql.CLIENT_CAN_HANDLE_EXPIRED_PASSWORDS|mysql.CLIENT_SESSION_TRACK|mysql.CLIENT_DEPRECATE_EOF|
	mysql.CLIENT_SSL_VERIFY_SERVER_CERT|mysql.CLIENT_REMEMBER_OPTIONS) |
	mariadbProgress | mariadbBulk | mariadbExtendedMeta | mariadbBulkUnitResults

// capsField locates the capability bits in a greeting or handshake response.
type capsField struct {
	low, high, ext int  // offsets of the lower 2 (or 4) bytes, upper 2 bytes, MariaDB's 4; -1 if absent
	wide           bool // low is 4 bytes (handshake response)
}

func (f capsField) get(b []byte) uint64 {
	var c uint64
	if f.wide {
		c = uint64(binary.LittleEndian.Uint32(b[f.low:]))
	} else {
		c = uint64(binary.LittleEndian.Uint16(b[f.low:]))
		if f.high >= 0 {
			c |= uint64(binary.LittleEndian.Uint16(b[f.high:])) << 16
		}
	}
	if f.ext >= 0 && c&uint64(mysql.CLIENT_LONG_PASSWORD) == 0 {
		c |= uint64(binary.LittleEndian.Uint32(b[f.ext:])) << 32
	}
	return c
}

func (f capsField) set(b []byte, c uint64) {
	if f.wide {
		binary.LittleEndian.PutUint32(b[f.low:], uint32(c))
	} else {
		binary.LittleEndian.PutUint16(b[f.low:], uint16(c))
		if f.high >= 0 {
			binary.LittleEndian.PutUint16(b[f.high:], uint16(c>>16))
		}
	}
	if f.ext >= 0 && c&uint64(mysql.CLIENT_LONG_PASSWORD) == 0 {
		binary.LittleEndian.PutUint32(b[f.ext:], uint32(c>>32))
	}
}

// greeting is the server's initial handshake (protocol 10).
type greeting struct {
	connID uint32
	caps   capsField
}

func parseGreeting(b []byte) (greeting, error) {
	g := greeting{caps: capsField{high: -1, ext: -1}}
	bad := fmt.Errorf("%w: malformed server greeting", ErrProtocol)
	if len(b) == 0 || b[0] != 10 {
		return g, bad
	}
	nul := bytes.IndexByte(b[1:], 0)
	if nul < 0 {
		return g, bad
	}
	i := 1 + nul + 1 // after the server version
	if len(b) < i+4+8+1+2 {
		return g, bad
	}
	g.connID = binary.LittleEndian.Uint32(b[i:])
	i += 4 + 8 + 1 // connection id, scramble part 1, filler
	g.caps.low = i
	i += 2
	if len(b) >= i+1+2+2+1+6+4 { // charset, status, upper caps, scramble length, filler, MariaDB caps
		g.caps.high = i + 3
		g.caps.ext = i + 3 + 2 + 1 + 6
	}
	return g, nil
}

// handshakeResponse is the client's handshake response (protocol 4.1), or its SSLRequest.
type handshakeResponse struct {
	caps       capsField
	sslRequest bool   // only the first 32 bytes: TLS follows
	db         string // database asked for, "" for none
}

func parseHandshakeResponse(b []byte) (handshakeResponse, error) {
	h := handshakeResponse{caps: capsField{low: 0, high: -1, ext: 28, wide: true}}
	if len(b) < 32 {
		return h, fmt.Errorf("%w: handshake response of %d bytes", ErrProtocol, len(b))
	}
	caps := h.caps.get(b)
	if caps&uint64(mysql.CLIENT_PROTOCOL_41) == 0 {
		return h, fmt.Errorf("%w: clients older than protocol 4.1 are not supported", ErrProtocol)
	}
	if len(b) == 32 {
		h.sslRequest = caps&uint64(mysql.CLIENT_SSL) != 0
		if !h.sslRequest {
			return h, fmt.Errorf("%w: handshake response without a user", ErrProtocol)
		}
		return h, nil
	}
	i, ok := skipCString(b, 32) // user
	if !ok {
		return h, fmt.Errorf("%w: handshake response: unterminated user name", ErrProtocol)
	}
	if i, ok = skipAuthData(b, i, caps); !ok {
		return h, fmt.Errorf("%w: handshake response: truncated auth data", ErrProtocol)
	}
	if caps&uint64(mysql.CLIENT_CONNECT_WITH_DB) != 0 && i < len(b) {
		end, ok := skipCString(b, i)
		if !ok {
			return h, fmt.Errorf("%w: handshake response: unterminated database", ErrProtocol)
		}
		h.db = string(b[i : end-1])
	}
	return h, nil
}

// changeUserDB is the database of a COM_CHANGE_USER packet (b[0] is the command).
func changeUserDB(b []byte, caps uint64) (string, bool) {
	i, ok := skipCString(b, 1) // user
	if !ok {
		return "", false
	}
	if caps&uint64(mysql.CLIENT_SECURE_CONNECTION) != 0 { // a 1-byte length, unlike the handshake
		if i >= len(b) || i+1+int(b[i]) > len(b) {
			return "", false
		}
		i += 1 + int(b[i])
	} else if i, ok = skipCString(b, i); !ok {
		return "", false
	}
	end, ok := skipCString(b, i)
	if !ok {
		return "", false
	}
	return string(b[i : end-1]), true
}

func skipAuthData(b []byte, i int, caps uint64) (int, bool) {
	switch {
	case caps&uint64(mysql.CLIENT_PLUGIN_AUTH_LENENC_CLIENT_DATA) != 0:
		n, used, ok := lenenc(b[i:])
		if !ok || uint64(len(b)-i-used) < n {
			return 0, false
		}
		return i + used + int(n), true
	case caps&uint64(mysql.CLIENT_SECURE_CONNECTION) != 0:
		if i >= len(b) || i+1+int(b[i]) > len(b) {
			return 0, false
		}
		return i + 1 + int(b[i]), true
	}
	return skipCString(b, i)
}

// skipCString returns the offset after the NUL-terminated string at b[i:].
func skipCString(b []byte, i int) (int, bool) {
	if i > len(b) {
		return 0, false
	}
	n := bytes.IndexByte(b[i:], 0)
	if n < 0 {
		return 0, false
	}
	return i + n + 1, true
}
