package store

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math/big"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/gocql/gocql"
	"gopkg.in/inf.v0"
)

func invalidNotFound(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrNotFound, fmt.Sprintf(format, args...))
}

// convert turns a JSON value (string, json.Number, float64, bool, []any, map[string]any,
// json.RawMessage, nil) or a query-parameter string into the Go value gocql binds to a
// column of CQL type typ. The Go types are those gocql returns when reading, so values
// compare. A text column takes any JSON value and stores its Java string form, as ONAP
// MUSIC does (see javaText).
func convert(typ string, v any) (any, error) {
	if in, ok := strings.CutPrefix(typ, "frozen<"); ok {
		typ = strings.TrimSuffix(in, ">")
	}
	if raw, ok := v.(json.RawMessage); ok && !isText(typ) {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		v = nil
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("malformed JSON value: %w", err)
		}
	}
	if v == nil {
		return nil, nil
	}
	switch {
	case strings.HasPrefix(typ, "list<"), strings.HasPrefix(typ, "set<"):
		return convertList(typ[strings.IndexByte(typ, '<')+1:len(typ)-1], v)
	case strings.HasPrefix(typ, "map<"):
		k, val, _ := strings.Cut(typ[4:len(typ)-1], ",")
		return convertMap(strings.TrimSpace(k), strings.TrimSpace(val), v)
	}
	return convertScalar(typ, v)
}

func convertList(elem string, v any) (any, error) {
	arr, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("want a JSON array, got %T", v)
	}
	out := make([]any, len(arr))
	for i, e := range arr {
		c, err := convertScalar(elem, e)
		if err != nil {
			return nil, fmt.Errorf("element %d: %w", i, err)
		}
		out[i] = c
	}
	return out, nil
}

func convertMap(kt, vt string, v any) (any, error) {
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("want a JSON object, got %T", v)
	}
	out := make(map[any]any, len(m))
	for k, e := range m {
		ck, err := convertScalar(kt, k)
		if err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		if out[ck], err = convertScalar(vt, e); err != nil {
			return nil, fmt.Errorf("value of %q: %w", k, err)
		}
	}
	return out, nil
}

// text returns v's textual form: query parameters and JSON numbers are text.
func text(v any) (string, bool) {
	switch x := v.(type) {
	case string:
		return x, true
	case json.Number:
		return string(x), true
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64), true
	case bool:
		return strconv.FormatBool(x), true
	}
	return "", false
}

func isText(typ string) bool { return typ == "text" || typ == "varchar" || typ == "ascii" }

func convertScalar(typ string, v any) (any, error) {
	if isText(typ) {
		return javaText(v)
	}
	s, ok := text(v)
	if !ok {
		return nil, fmt.Errorf("want a scalar, got %T", v)
	}
	switch typ {
	case "boolean":
		return strconv.ParseBool(s)
	case "int":
		n, err := strconv.ParseInt(s, 10, 32)
		return int(n), err
	case "bigint", "counter":
		return strconv.ParseInt(s, 10, 64)
	case "smallint":
		n, err := strconv.ParseInt(s, 10, 16)
		return int16(n), err
	case "tinyint":
		n, err := strconv.ParseInt(s, 10, 8)
		return int8(n), err
	case "varint":
		n, ok := new(big.Int).SetString(s, 10)
		if !ok {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		return n, nil
	case "float":
		f, err := strconv.ParseFloat(s, 32)
		return float32(f), err
	case "double":
		return strconv.ParseFloat(s, 64)
	case "decimal":
		d, ok := new(inf.Dec).SetString(s)
		if !ok {
			return nil, fmt.Errorf("%q is not a decimal", s)
		}
		return d, nil
	}
	return convertOther(typ, s)
}

func convertOther(typ, s string) (any, error) {
	switch typ {
	case "uuid", "timeuuid":
		return gocql.ParseUUID(s)
	case "timestamp":
		if ms, err := strconv.ParseInt(s, 10, 64); err == nil {
			return time.UnixMilli(ms).UTC(), nil
		}
		return time.Parse(time.RFC3339Nano, s)
	case "date":
		return time.Parse("2006-01-02", s)
	case "blob":
		return base64.StdEncoding.DecodeString(s)
	case "inet":
		ip := net.ParseIP(s)
		if ip == nil {
			return nil, fmt.Errorf("%q is not an IP address", s)
		}
		return ip, nil
	}
	return nil, fmt.Errorf("type %s is not supported", typ)
}

// keyText formats a key value for a lock name.
func keyText(v any) string {
	switch x := v.(type) {
	case time.Time:
		return x.UTC().Format(time.RFC3339Nano)
	case []byte:
		return base64.StdEncoding.EncodeToString(x)
	}
	return fmt.Sprint(v)
}
