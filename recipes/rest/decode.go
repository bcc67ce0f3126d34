package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
)

var errBadRequest = errors.New("rest: bad request")

// errBodyMissing is ONAP's answer to a request without the body it needs.
const errBodyMissing = "Incomplete Request body. Please correct your input request and retry."

// badRequest is an error answered 400 whose message (the "error" field) is the
// formatted text alone, as ONAP words them.
func badRequest(format string, args ...any) error {
	return &requestError{msg: fmt.Sprintf(format, args...)}
}

type requestError struct{ msg string }

func (e *requestError) Error() string { return e.msg }
func (e *requestError) Unwrap() error { return errBadRequest }

// ONAP request bodies. Unknown fields are ignored, as ONAP did.
type (
	jsonKeySpace struct {
		ReplicationInfo    map[string]any    `json:"replicationInfo"`
		DurabilityOfWrites any               `json:"durabilityOfWrites"`
		ConsistencyInfo    map[string]string `json:"consistencyInfo"`
	}
	jsonTable struct {
		Fields           map[string]string `json:"fields"`
		Properties       map[string]any    `json:"properties"`
		PrimaryKey       string            `json:"primaryKey"`
		PartitionKey     string            `json:"partitionKey"`
		PartitionColumns string            `json:"partitionColumns"` // earlier name of partitionKey
		ClusteringKey    string            `json:"clusteringKey"`
		FilteringKey     string            `json:"filteringKey"`
		ClusteringOrder  string            `json:"clusteringOrder"`
		ConsistencyInfo  map[string]string `json:"consistencyInfo"`
	}
	jsonRow struct { // JsonInsert, JsonUpdate and JsonDelete in one
		Values          map[string]json.RawMessage `json:"values"`
		Conditions      map[string]json.RawMessage `json:"conditions"`
		ConsistencyInfo map[string]string          `json:"consistencyInfo"`
		TTL             any                        `json:"ttl"`
		Timestamp       any                        `json:"timestamp"`
		Columns         []string                   `json:"columns"`
	}
	jsonLock struct {
		LockType    string `json:"locktype"`
		LeasePeriod any    `json:"leasePeriod"`
	}
)

// decode reads a JSON body into v; an empty body leaves v zero unless required.
func decode(r io.Reader, v any, required bool) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return err // *http.MaxBytesError for a body over the limit
	}
	if len(bytes.TrimSpace(raw)) == 0 {
		if required {
			return badRequest(errBodyMissing)
		}
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %s", jsonError(err))
	}
	if dec.More() {
		return badRequest("request body: trailing data after the JSON object")
	}
	return nil
}

func jsonError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("field %q must be %s, got %s", te.Field, te.Type, te.Value)
	}
	return err.Error()
}

// jsonValues turns column values into what the store converts: scalars decoded (numbers
// as json.Number), objects and arrays kept raw so that a text column gets them in
// document order, as ONAP does.
func jsonValues(in map[string]json.RawMessage) map[string]any {
	if in == nil {
		return nil
	}
	out := make(map[string]any, len(in))
	for k, raw := range in {
		raw = bytes.TrimSpace(raw)
		if len(raw) > 0 && (raw[0] == '{' || raw[0] == '[') {
			out[k] = raw
			continue
		}
		var v any
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		_ = dec.Decode(&v) // raw is one valid JSON value: the body decoded
		out[k] = v
	}
	return out
}

// intField reads an integer given as a JSON number or string; absent is 0.
func intField(name string, v any) (int64, error) {
	var s string
	switch x := v.(type) {
	case nil:
		return 0, nil
	case json.Number:
		s = string(x)
	case string:
		if x == "" {
			return 0, nil
		}
		s = x
	default:
		return 0, badRequest("%s must be an integer", name)
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, badRequest("%s must be a non-negative integer, got %q", name, s)
	}
	return n, nil
}

// boolField reads a boolean given as JSON true/false or a string; absent is nil.
func boolField(name string, v any) (*bool, error) {
	var b bool
	switch x := v.(type) {
	case nil:
		return nil, nil
	case bool:
		b = x
	case string:
		p, err := strconv.ParseBool(x)
		if err != nil {
			return nil, badRequest("%s must be true or false, got %q", name, x)
		}
		b = p
	default:
		return nil, badRequest("%s must be true or false", name)
	}
	return &b, nil
}

// primaryKey parses ONAP's key forms: "a", "(a)", "a, b" (a partition, b clustering),
// "((a, b), c)" and "(a, b), c".
func primaryKey(s string) (partition, clustering []string, err error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil, badRequest("primary key is missing")
	}
	if strings.HasPrefix(s, "(") && strings.HasSuffix(s, ")") && balanced(s[1:len(s)-1]) {
		s = strings.TrimSpace(s[1 : len(s)-1])
	}
	if rest, ok := strings.CutPrefix(s, "("); ok {
		in, after, found := strings.Cut(rest, ")")
		if !found {
			return nil, nil, badRequest("primary key %q: unbalanced parentheses", s)
		}
		partition = splitList(in)
		after = strings.TrimSpace(after)
		if after != "" {
			a, ok := strings.CutPrefix(after, ",")
			if !ok {
				return nil, nil, badRequest("primary key %q: expected ',' after the partition key", s)
			}
			clustering = splitList(a)
		}
	} else {
		all := splitList(s)
		if len(all) == 0 {
			return nil, nil, badRequest("primary key %q names no column", s)
		}
		partition, clustering = all[:1], all[1:]
	}
	if len(partition) == 0 || strings.ContainsAny(strings.Join(append(partition, clustering...), ""), "()") {
		return nil, nil, badRequest("primary key %q is malformed", s)
	}
	return partition, clustering, nil
}

func balanced(s string) bool {
	depth := 0
	for _, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
			if depth < 0 {
				return false
			}
		}
	}
	return depth == 0
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// rowKey turns query parameters into a row key; each may appear once.
func rowKey(q url.Values) (map[string]any, error) {
	key := make(map[string]any, len(q))
	for k, vs := range q {
		if len(vs) != 1 {
			return nil, badRequest("row key parameter %q given %d times", k, len(vs))
		}
		key[k] = vs[0]
	}
	return key, nil
}

func itoa(i int) string { return strconv.Itoa(i) }
