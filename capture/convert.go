package capture

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/music-coord/music/changeevent"
)

// binaryCollation is the collation id of the binary character set.
const binaryCollation = 63

// UnrepresentableError is a value (or column type) capture cannot publish exactly. The
// table stops being captured until it is fixed and resnapshotted.
type UnrepresentableError struct {
	DB, Table, Column string
	Reason            string
}

func (e *UnrepresentableError) Error() string {
	return fmt.Sprintf("capture: table %s.%s column %s: %s (table stopped; fix it and resnapshot the table)",
		e.DB, e.Table, e.Column, e.Reason)
}

// colDecoder knows how to turn one column's go-mysql value into its changeevent value.
type colDecoder struct {
	changeevent.Column
	typ     byte // real MySQL type
	dec     int  // fractional digits of temporal types
	labels  []string
	text    bool   // character data: UTF-8 JSON, or text in charset converted to UTF-8
	charset string // the column's character set (MariaDB name), "" if unknown or not text
	padTo   int    // BINARY(n): the binlog strips trailing 0x00 bytes, MariaDB returns n bytes
}

// tableSchema is one table as a table-map event describes it.
type tableSchema struct {
	db, table string
	cols      []colDecoder
	columns   []changeevent.Column
	pk        []int // column indexes of the key (all columns when there is no primary key)
	hasPK     bool
	err       error // a column type capture cannot represent

	types    []byte // the table map's column types, to validate the cache
	captured bool   // passes the filter
	subject  string
	version  string               // schema version (GTID of the DDL that made it)
	declared []changeevent.Column // information_schema's view, refining SQL types
}

// realType resolves MYSQL_TYPE_STRING's hidden ENUM/SET/CHAR type, as go-mysql does.
func realType(tp byte, meta uint16) (byte, uint16) {
	if tp == mysql.MYSQL_TYPE_STRING && meta >= 256 {
		b0 := byte(meta >> 8)
		if b0&0x30 != 0x30 {
			return b0 | 0x30, uint16(meta&0xFF) | uint16((b0&0x30)^0x30)<<4
		}
		return b0, meta & 0xFF
	}
	return tp, meta
}

// newTableSchema builds the decoders of a table from its table-map event (which carries
// names, signedness, charsets, enum/set labels and the primary key with FULL metadata).
func newTableSchema(tm *replication.TableMapEvent) *tableSchema {
	ts := &tableSchema{db: string(tm.Schema), table: string(tm.Table)}
	names := tm.ColumnNameString()
	unsigned := tm.UnsignedMap()
	collations := tm.CollationMap()
	enumSetCollations := tm.EnumSetCollationMap()
	enums, sets := tm.EnumStrValueMap(), tm.SetStrValueMap()
	pk := map[int]bool{}
	for _, i := range tm.PrimaryKey {
		pk[int(i)] = true
	}
	for i := 0; i < int(tm.ColumnCount); i++ {
		name := fmt.Sprintf("@%d", i+1)
		if i < len(names) {
			name = names[i]
		} else if ts.err == nil {
			ts.err = &UnrepresentableError{DB: ts.db, Table: ts.table, Column: name,
				Reason: "no column names in the binlog: set binlog_row_metadata=FULL"}
		}
		c := colDecoder{Column: changeevent.Column{Name: name, PK: pk[i], Nullable: true}}
		if ok, nullable := tm.Nullable(i); ok {
			c.Nullable = nullable
		}
		tp, meta := realType(tm.ColumnType[i], tm.ColumnMeta[i])
		c.typ = tp
		coll, hasColl := collations[i]
		binary := hasColl && coll == binaryCollation
		if !hasColl {
			coll, hasColl = enumSetCollations[i]
		}
		var cs changeevent.Collation
		if hasColl && !binary {
			cs, _ = changeevent.CollationByID(int(coll))
		}
		if err := c.describe(tp, meta, unsigned[i], binary, enums[i], sets[i]); err != nil && ts.err == nil {
			ts.err = &UnrepresentableError{DB: ts.db, Table: ts.table, Column: name, Reason: err.Error()}
		}
		if err := c.setCharset(cs); err != nil && ts.err == nil {
			ts.err = &UnrepresentableError{DB: ts.db, Table: ts.table, Column: name, Reason: err.Error()}
		}
		ts.cols = append(ts.cols, c)
	}
	for i := range ts.cols {
		if ts.cols[i].PK {
			ts.pk = append(ts.pk, i)
		}
	}
	ts.hasPK = len(ts.pk) > 0
	if !ts.hasPK {
		for i := range ts.cols {
			ts.pk = append(ts.pk, i)
		}
	}
	ts.columns = make([]changeevent.Column, len(ts.cols))
	for i, c := range ts.cols {
		ts.columns[i] = c.Column
	}
	return ts
}

func intName(tp byte) string {
	switch tp {
	case mysql.MYSQL_TYPE_TINY:
		return "tinyint"
	case mysql.MYSQL_TYPE_SHORT:
		return "smallint"
	case mysql.MYSQL_TYPE_INT24:
		return "mediumint"
	case mysql.MYSQL_TYPE_LONG:
		return "int"
	}
	return "bigint"
}

var blobNames = map[uint16][2]string{1: {"tinytext", "tinyblob"}, 2: {"text", "blob"}, 3: {"mediumtext", "mediumblob"}, 4: {"longtext", "longblob"}}

// describe sets the column's kind and SQL type from the table map.
func (c *colDecoder) describe(tp byte, meta uint16, unsigned, binary bool, enum, set []string) error {
	k, sqlType := changeevent.Kind(""), ""
	switch tp {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG:
		k, sqlType = changeevent.KindInt, intName(tp)
		if unsigned {
			k, sqlType = changeevent.KindUint, sqlType+" unsigned"
		}
	case mysql.MYSQL_TYPE_NEWDECIMAL:
		k, sqlType = changeevent.KindDecimal, fmt.Sprintf("decimal(%d,%d)", meta>>8, meta&0xFF)
	case mysql.MYSQL_TYPE_FLOAT:
		k, sqlType = changeevent.KindFloat, "float"
	case mysql.MYSQL_TYPE_DOUBLE:
		k, sqlType = changeevent.KindDouble, "double"
	case mysql.MYSQL_TYPE_BIT:
		k, sqlType = changeevent.KindBit, fmt.Sprintf("bit(%d)", (meta>>8)*8+meta&0xFF)
	case mysql.MYSQL_TYPE_YEAR:
		k, sqlType = changeevent.KindYear, "year"
	case mysql.MYSQL_TYPE_DATE, mysql.MYSQL_TYPE_NEWDATE:
		k, sqlType = changeevent.KindDate, "date"
	case mysql.MYSQL_TYPE_TIME, mysql.MYSQL_TYPE_TIME2:
		c.dec = int(meta)
		k, sqlType = changeevent.KindTime, fracType("time", c.dec)
	case mysql.MYSQL_TYPE_DATETIME, mysql.MYSQL_TYPE_DATETIME2:
		c.dec = int(meta)
		k, sqlType = changeevent.KindDateTime, fracType("datetime", c.dec)
	case mysql.MYSQL_TYPE_TIMESTAMP, mysql.MYSQL_TYPE_TIMESTAMP2:
		c.dec = int(meta)
		k, sqlType = changeevent.KindTimestamp, fracType("timestamp", c.dec)
	case mysql.MYSQL_TYPE_ENUM:
		if enum == nil {
			return fmt.Errorf("no ENUM labels in the binlog: set binlog_row_metadata=FULL")
		}
		k, sqlType, c.labels = changeevent.KindEnum, "enum("+quoteLabels(enum)+")", enum
	case mysql.MYSQL_TYPE_SET:
		if set == nil {
			return fmt.Errorf("no SET labels in the binlog: set binlog_row_metadata=FULL")
		}
		k, sqlType, c.labels = changeevent.KindSet, "set("+quoteLabels(set)+")", set
	case mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING:
		k, sqlType = changeevent.KindString, fmt.Sprintf("varchar(%d bytes)", meta)
		if binary {
			k, sqlType = changeevent.KindBytes, fmt.Sprintf("varbinary(%d)", meta)
		}
	case mysql.MYSQL_TYPE_STRING:
		k, sqlType = changeevent.KindString, fmt.Sprintf("char(%d bytes)", meta)
		if binary {
			k, sqlType = changeevent.KindBytes, fmt.Sprintf("binary(%d)", meta)
			c.padTo = int(meta)
		}
	case mysql.MYSQL_TYPE_BLOB:
		n, ok := blobNames[meta]
		if !ok {
			return fmt.Errorf("blob pack length %d", meta)
		}
		k, sqlType = changeevent.KindString, n[0]
		if binary {
			k, sqlType = changeevent.KindBytes, n[1]
		}
	case mysql.MYSQL_TYPE_JSON:
		k, sqlType = changeevent.KindJSON, "json"
	case mysql.MYSQL_TYPE_GEOMETRY:
		k, sqlType = changeevent.KindBytes, "geometry"
	default:
		return fmt.Errorf("column type %d is not supported", tp)
	}
	c.Kind, c.SQLType = k, sqlType
	c.text = k == changeevent.KindString || k == changeevent.KindJSON
	return nil
}

// setCharset records the character set and collation of a text, ENUM or SET column (cs
// is zero when the table map has none: binary or not text). Text in a character set that
// is not carried as UTF-8 becomes KindBytes (see changeevent's package doc); ENUM and SET
// labels, which the table map gives in the column's character set, are converted to UTF-8.
func (c *colDecoder) setCharset(cs changeevent.Collation) error {
	if cs.Charset == "" || cs.Charset == "binary" {
		return nil
	}
	c.Column.SetCharset(cs.Charset, cs.Name)
	c.charset = cs.Charset
	c.text = c.Kind == changeevent.KindString || c.Kind == changeevent.KindJSON
	for i, l := range c.labels {
		s, err := labelText(cs.Charset, l)
		if err != nil {
			return err
		}
		c.labels[i] = s
	}
	if c.Kind == changeevent.KindEnum || c.Kind == changeevent.KindSet {
		name := "enum"
		if c.Kind == changeevent.KindSet {
			name = "set"
		}
		c.SQLType = name + "(" + quoteLabels(c.labels) + ")"
	}
	return nil
}

// labelText converts an ENUM or SET label from the column's character set to UTF-8. A
// label of a character set carried as bytes must be valid UTF-8 as it is (ASCII labels
// are); capture cannot carry other labels exactly.
func labelText(cs, label string) (string, error) {
	if changeevent.TextCharset(cs) {
		return changeevent.DecodeText(cs, []byte(label))
	}
	if !utf8.ValidString(label) {
		return "", fmt.Errorf("ENUM/SET label %q in %s is not UTF-8: labels of this character set are not supported", label, cs)
	}
	return label, nil
}

func fracType(name string, dec int) string {
	if dec == 0 {
		return name
	}
	return fmt.Sprintf("%s(%d)", name, dec)
}

func quoteLabels(labels []string) string {
	q := make([]string, len(labels))
	for i, l := range labels {
		q[i] = "'" + strings.ReplaceAll(l, "'", "''") + "'"
	}
	return strings.Join(q, ",")
}

// convertRow turns a go-mysql row into a changeevent row.
func (ts *tableSchema) convertRow(raw []any) (changeevent.Row, error) {
	row := make(changeevent.Row, len(ts.cols))
	for i, v := range raw {
		if i >= len(ts.cols) {
			break
		}
		c := &ts.cols[i]
		cv, err := c.convert(v)
		if err != nil {
			return nil, &UnrepresentableError{DB: ts.db, Table: ts.table, Column: c.Name, Reason: err.Error()}
		}
		row[c.Name] = cv
	}
	return row, nil
}

// key picks the key columns out of a row.
func (ts *tableSchema) key(row changeevent.Row) changeevent.Row {
	k := make(changeevent.Row, len(ts.pk))
	for _, i := range ts.pk {
		name := ts.cols[i].Name
		k[name] = row[name]
	}
	return k
}

func (c *colDecoder) convert(v any) (any, error) {
	if v == nil {
		return nil, nil
	}
	switch c.Kind {
	case changeevent.KindInt, changeevent.KindYear:
		return toInt64(v)
	case changeevent.KindUint:
		return toUint64(v)
	case changeevent.KindBit:
		n, err := toInt64(v)
		return uint64(n), err
	case changeevent.KindFloat:
		if f, ok := v.(float32); ok {
			return f, nil
		}
	case changeevent.KindDouble:
		if f, ok := v.(float64); ok {
			return f, nil
		}
	case changeevent.KindDecimal, changeevent.KindDate, changeevent.KindDateTime, changeevent.KindTimestamp:
		if s, ok := v.(string); ok {
			return strings.Clone(s), nil
		}
	case changeevent.KindTime:
		if s, ok := v.(string); ok {
			return fixFraction(s, c.dec), nil
		}
	case changeevent.KindEnum:
		return c.enumLabel(v)
	case changeevent.KindSet:
		return c.setLabels(v)
	case changeevent.KindString, changeevent.KindJSON:
		return textValue(c.charset, v)
	case changeevent.KindBytes:
		switch b := v.(type) {
		case string:
			return c.pad([]byte(b)), nil
		case []byte:
			return c.pad(append([]byte{}, b...)), nil
		}
	}
	return nil, fmt.Errorf("unexpected %T value for %s column", v, c.SQLType)
}

// textValue converts a text value from its character set cs to UTF-8 (cs is one carried
// as text, see changeevent.TextCharset; "" is UTF-8: JSON, or a collation capture does not
// know).
func textValue(cs string, v any) (any, error) {
	var b []byte
	switch x := v.(type) {
	case string:
		b = []byte(x)
	case []byte:
		b = x
	default:
		return nil, fmt.Errorf("unexpected %T value for a text column", v)
	}
	if cs == "" {
		cs = "utf8mb4"
	}
	s, err := changeevent.DecodeText(cs, b)
	if err != nil {
		return nil, fmt.Errorf("text is not valid %s: %v", cs, err)
	}
	return s, nil
}

// fixFraction makes a TIME string carry exactly dec fractional digits (go-mysql drops an
// all-zero fraction).
func fixFraction(s string, dec int) string {
	whole, frac, _ := strings.Cut(s, ".")
	if dec == 0 {
		return whole
	}
	for len(frac) < dec {
		frac += "0"
	}
	return whole + "." + frac[:dec]
}

func (c *colDecoder) enumLabel(v any) (any, error) {
	n, err := toInt64(v)
	if err != nil {
		return nil, err
	}
	if n == 0 {
		return "", nil // MariaDB's invalid-value index
	}
	if n < 0 || int(n) > len(c.labels) {
		return nil, fmt.Errorf("ENUM index %d out of %d labels", n, len(c.labels))
	}
	return c.labels[n-1], nil
}

func (c *colDecoder) setLabels(v any) (any, error) {
	n, err := toInt64(v)
	if err != nil {
		return nil, err
	}
	bits := uint64(n)
	var out []string
	for i, l := range c.labels {
		if bits&(1<<uint(i)) != 0 {
			out = append(out, l)
			bits &^= 1 << uint(i)
		}
	}
	if bits != 0 {
		return nil, fmt.Errorf("SET bits %#x beyond its %d labels", bits, len(c.labels))
	}
	return strings.Join(out, ","), nil
}

func toInt64(v any) (int64, error) {
	switch n := v.(type) {
	case int8:
		return int64(n), nil
	case int16:
		return int64(n), nil
	case int32:
		return int64(n), nil
	case int64:
		return n, nil
	case int:
		return int64(n), nil
	}
	return 0, fmt.Errorf("unexpected %T for an integer", v)
}

func toUint64(v any) (uint64, error) {
	switch n := v.(type) {
	case uint8:
		return uint64(n), nil
	case uint16:
		return uint64(n), nil
	case uint32:
		return uint64(n), nil
	case uint64:
		return n, nil
	}
	return 0, fmt.Errorf("unexpected %T for an unsigned integer", v)
}

func (c *colDecoder) pad(b []byte) []byte {
	for len(b) < c.padTo {
		b = append(b, 0)
	}
	return b
}
