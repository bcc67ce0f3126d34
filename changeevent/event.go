package changeevent

import (
	"bytes"
	"errors"
	"fmt"
	json "github.com/goccy/go-json"
	"strconv"
)

// Op is what happened to a row, as in Debezium: c, u, d, r (snapshot read); and ddl for a
// schema change.
type Op string

const (
	OpCreate Op = "c"
	OpUpdate Op = "u"
	OpDelete Op = "d"
	OpRead   Op = "r"
	OpDDL    Op = "ddl"
)

// Kind is a column's value representation (see the package doc).
type Kind string

const (
	KindInt       Kind = "int"
	KindUint      Kind = "uint"
	KindFloat     Kind = "float"
	KindDouble    Kind = "double"
	KindDecimal   Kind = "decimal"
	KindBit       Kind = "bit"
	KindYear      Kind = "year"
	KindDate      Kind = "date"
	KindTime      Kind = "time"
	KindDateTime  Kind = "datetime"
	KindTimestamp Kind = "timestamp"
	KindString    Kind = "string"
	KindEnum      Kind = "enum"
	KindSet       Kind = "set"
	KindJSON      Kind = "json"
	KindBytes     Kind = "bytes"
)

// Column describes one column of the table as it was when the event was written.
type Column struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// SQLType is the column's MariaDB type as declared, e.g. "decimal(20,4)", "datetime(6)".
	SQLType string `json:"sql_type"`
	PK      bool   `json:"pk,omitempty"`
	// Nullable is true unless the column is NOT NULL.
	Nullable bool `json:"nullable,omitempty"`
	// Charset and Collation are a text column's (also ENUM and SET) character set and
	// collation, MariaDB names (e.g. "latin1", "latin1_swedish_ci"); empty for other
	// columns and in events of an older capture. See the package doc and CollationKey.
	Charset   string `json:"charset,omitempty"`
	Collation string `json:"collation,omitempty"`
}

// Row is a row image: column name to value (types per the package doc; nil is NULL).
type Row map[string]any

// Source says where and when the change happened.
type Source struct {
	Version   string `json:"version"`
	Connector string `json:"connector"` // "mariadb"
	Name      string `json:"name"`      // origin site
	ServerID  uint32 `json:"server_id"`
	GTID      string `json:"gtid"` // domain-server-seq
	File      string `json:"file,omitempty"`
	Pos       uint32 `json:"pos,omitempty"`
	Row       int    `json:"row"`             // index of this row in its transaction, from 0
	TsMs      int64  `json:"ts_ms"`           // source commit time, ms (TsUs/1000)
	TsUs      int64  `json:"ts_us,omitempty"` // source commit time on the origin's commit clock, µs (0: TsMs*1000)
	DB        string `json:"db"`
	Table     string `json:"table"`
	Snapshot  string `json:"snapshot"` // "false", "true", or "last" for a snapshot's last row
}

// Transaction places the event in its source transaction so a remote apply can apply the
// transaction all or nothing. Snapshot rows (op r) belong to no source transaction: their
// ID is "snapshot:<db>.<table>:<start unix ms>", Index the row's number in the snapshot
// and Total 0; each is an independent upsert.
type Transaction struct {
	ID    string `json:"id"`    // the GTID
	Index int    `json:"index"` // this event's position, 0 .. Total-1
	Total int    `json:"total"` // events in the transaction; 0 while a large transaction streams
	// Last marks the transaction's last event. A transaction with more events than the
	// capture buffers (capture.Config.MaxTxnBuffer) streams: its events carry Total 0
	// except the last one, which carries Last and the final Total. Buffered transactions
	// carry Total on every event and Last on the final one.
	Last bool `json:"last,omitempty"`
}

// DDL carries a schema change.
type DDL struct {
	Statement string `json:"statement"`
	// Kind is the statement's verb: CREATE, ALTER, DROP, RENAME, TRUNCATE.
	Kind string `json:"kind"`
}

// Event is one row change or schema change.
type Event struct {
	Before      Row         `json:"before"`
	After       Row         `json:"after"`
	Source      Source      `json:"source"`
	Op          Op          `json:"op"`
	TsMs        int64       `json:"ts_ms"` // when capture processed it
	Transaction Transaction `json:"transaction"`
	Key         Row         `json:"key,omitempty"`
	Columns     []Column    `json:"columns,omitempty"`
	// SchemaVersion is the GTID of the DDL that produced the table's schema ("" for the
	// schema found at start).
	SchemaVersion string `json:"schema_version"`
	DDL           *DDL   `json:"ddl,omitempty"`
}

// Errors.
var (
	ErrMalformed = errors.New("changeevent: malformed event")
)

// Marshal encodes e as JSON.
func Marshal(e *Event) ([]byte, error) { return json.Marshal(e) }

// Unmarshal decodes an event and converts row values to the Go types of their columns'
// kinds. An event whose values do not fit their columns is an error naming the column.
func Unmarshal(data []byte) (*Event, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var e Event
	if err := dec.Decode(&e); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	if err := e.validate(); err != nil {
		return nil, err
	}
	kinds := make(map[string]Kind, len(e.Columns))
	for _, c := range e.Columns {
		kinds[c.Name] = c.Kind
	}
	for _, r := range []Row{e.Before, e.After, e.Key} {
		if err := r.convert(kinds, e.Source.Table); err != nil {
			return nil, err
		}
	}
	return &e, nil
}

func (e *Event) validate() error {
	switch e.Op {
	case OpCreate, OpRead:
		if e.After == nil {
			return fmt.Errorf("%w: op %q without after image", ErrMalformed, e.Op)
		}
	case OpUpdate:
		if e.After == nil || e.Before == nil {
			return fmt.Errorf("%w: op u needs before and after images", ErrMalformed)
		}
	case OpDelete:
		if e.Before == nil {
			return fmt.Errorf("%w: op d without before image", ErrMalformed)
		}
	case OpDDL:
		if e.DDL == nil {
			return fmt.Errorf("%w: op ddl without ddl", ErrMalformed)
		}
	default:
		return fmt.Errorf("%w: unknown op %q", ErrMalformed, e.Op)
	}
	if e.Source.Name == "" || e.Source.GTID == "" {
		return fmt.Errorf("%w: source.name and source.gtid are required", ErrMalformed)
	}
	return nil
}

func (r Row) convert(kinds map[string]Kind, table string) error {
	for name, v := range r {
		kind, ok := kinds[name]
		if !ok {
			return fmt.Errorf("%w: table %s: column %q not in columns", ErrMalformed, table, name)
		}
		cv, err := FromJSON(kind, v)
		if err != nil {
			return fmt.Errorf("%w: table %s column %s: %v", ErrMalformed, table, name, err)
		}
		r[name] = cv
	}
	return nil
}

// FromJSON converts a value decoded with json.Decoder.UseNumber into the Go type of kind.
func FromJSON(kind Kind, v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch kind {
	case KindInt, KindYear:
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%v is not an integer", v)
		}
		return strconv.ParseInt(string(n), 10, 64)
	case KindUint, KindBit:
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%v is not an unsigned integer", v)
		}
		return strconv.ParseUint(string(n), 10, 64)
	case KindFloat, KindDouble:
		n, ok := v.(json.Number)
		if !ok {
			return nil, fmt.Errorf("%v is not a number", v)
		}
		if kind == KindFloat {
			f, err := strconv.ParseFloat(string(n), 32)
			return float32(f), err
		}
		return strconv.ParseFloat(string(n), 64)
	case KindBytes:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%v is not base64 text", v)
		}
		var b []byte
		if err := json.Unmarshal(strconv.AppendQuote(nil, s), &b); err != nil {
			return nil, fmt.Errorf("bad base64: %v", err)
		}
		if b == nil {
			b = []byte{}
		}
		return b, nil
	case KindDecimal, KindDate, KindTime, KindDateTime, KindTimestamp, KindString, KindEnum, KindSet, KindJSON:
		s, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("%v is not a string", v)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown kind %q", kind)
}
