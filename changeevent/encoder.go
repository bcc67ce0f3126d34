package changeevent

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"unicode/utf8"
)

// Encoder encodes events to the same JSON as Marshal (same keys and values; row columns
// in Columns order instead of sorted), several times faster: it writes the envelope by hand
// and reuses the encoded column list of events that share one Columns slice (as capture's
// events of one table do; such a slice must not be modified once encoded). An Encoder is
// not safe for concurrent use.
type Encoder struct {
	cols map[*Column][]byte
}

// NewEncoder returns an encoder.
func NewEncoder() *Encoder { return &Encoder{cols: map[*Column][]byte{}} }

// Append appends e's JSON encoding to dst.
func (enc *Encoder) Append(dst []byte, e *Event) ([]byte, error) {
	var err error
	dst = append(dst, `{"before":`...)
	if dst, err = appendRow(dst, e.Before, e.Columns); err != nil {
		return nil, err
	}
	dst = append(dst, `,"after":`...)
	if dst, err = appendRow(dst, e.After, e.Columns); err != nil {
		return nil, err
	}
	dst = appendSource(append(dst, `,"source":`...), &e.Source)
	dst = appendString(append(dst, `,"op":`...), string(e.Op))
	dst = strconv.AppendInt(append(dst, `,"ts_ms":`...), e.TsMs, 10)
	t := &e.Transaction
	dst = appendString(append(dst, `,"transaction":{"id":`...), t.ID)
	dst = strconv.AppendInt(append(dst, `,"index":`...), int64(t.Index), 10)
	dst = strconv.AppendInt(append(dst, `,"total":`...), int64(t.Total), 10)
	if t.Last {
		dst = append(dst, `,"last":true`...)
	}
	dst = append(dst, '}')
	if len(e.Key) > 0 {
		if dst, err = appendRow(append(dst, `,"key":`...), e.Key, e.Columns); err != nil {
			return nil, err
		}
	}
	if len(e.Columns) > 0 {
		dst = append(dst, `,"columns":`...)
		cached, ok := enc.cols[&e.Columns[0]]
		if !ok || len(enc.cols) > 10000 {
			if len(enc.cols) > 10000 {
				clear(enc.cols)
			}
			if cached, err = json.Marshal(e.Columns); err != nil {
				return nil, err
			}
			enc.cols[&e.Columns[0]] = cached
		}
		dst = append(dst, cached...)
	}
	dst = appendString(append(dst, `,"schema_version":`...), e.SchemaVersion)
	if e.DDL != nil {
		ddl, err := json.Marshal(e.DDL)
		if err != nil {
			return nil, err
		}
		dst = append(append(dst, `,"ddl":`...), ddl...)
	}
	return append(dst, '}'), nil
}

func appendSource(dst []byte, s *Source) []byte {
	dst = appendString(append(dst, `{"version":`...), s.Version)
	dst = appendString(append(dst, `,"connector":`...), s.Connector)
	dst = appendString(append(dst, `,"name":`...), s.Name)
	dst = strconv.AppendUint(append(dst, `,"server_id":`...), uint64(s.ServerID), 10)
	dst = appendString(append(dst, `,"gtid":`...), s.GTID)
	if s.File != "" {
		dst = appendString(append(dst, `,"file":`...), s.File)
	}
	if s.Pos != 0 {
		dst = strconv.AppendUint(append(dst, `,"pos":`...), uint64(s.Pos), 10)
	}
	dst = strconv.AppendInt(append(dst, `,"row":`...), int64(s.Row), 10)
	dst = strconv.AppendInt(append(dst, `,"ts_ms":`...), s.TsMs, 10)
	if s.TsUs != 0 {
		dst = strconv.AppendInt(append(dst, `,"ts_us":`...), s.TsUs, 10)
	}
	dst = appendString(append(dst, `,"db":`...), s.DB)
	dst = appendString(append(dst, `,"table":`...), s.Table)
	dst = appendString(append(dst, `,"snapshot":`...), s.Snapshot)
	return append(dst, '}')
}

// appendRow writes a row's columns in cols order (then any others, sorted).
func appendRow(dst []byte, r Row, cols []Column) ([]byte, error) {
	if r == nil {
		return append(dst, "null"...), nil
	}
	dst = append(dst, '{')
	n := 0
	var err error
	for i := range cols {
		v, ok := r[cols[i].Name]
		if !ok {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = append(appendString(dst, cols[i].Name), ':')
		if dst, err = appendValue(dst, v); err != nil {
			return nil, fmt.Errorf("column %s: %w", cols[i].Name, err)
		}
		n++
	}
	if n < len(r) { // names not in cols: sorted, after the others
		known := make(map[string]bool, len(cols))
		for _, c := range cols {
			known[c.Name] = true
		}
		var rest []string
		for k := range r {
			if !known[k] {
				rest = append(rest, k)
			}
		}
		sort.Strings(rest)
		for _, k := range rest {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = append(appendString(dst, k), ':')
			if dst, err = appendValue(dst, r[k]); err != nil {
				return nil, fmt.Errorf("column %s: %w", k, err)
			}
			n++
		}
	}
	return append(dst, '}'), nil
}

func appendValue(dst []byte, v any) ([]byte, error) {
	switch x := v.(type) {
	case nil:
		return append(dst, "null"...), nil
	case int64:
		return strconv.AppendInt(dst, x, 10), nil
	case uint64:
		return strconv.AppendUint(dst, x, 10), nil
	case string:
		return appendString(dst, x), nil
	case []byte:
		dst = append(dst, '"')
		dst = base64.StdEncoding.AppendEncode(dst, x)
		return append(dst, '"'), nil
	case float64, float32:
		b, err := json.Marshal(x) // encoding/json's float format (rejects NaN and Inf)
		return append(dst, b...), err
	}
	b, err := json.Marshal(v)
	return append(dst, b...), err
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string, escaping like encoding/json (without its HTML
// escaping); invalid UTF-8 becomes U+FFFD as encoding/json does.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
