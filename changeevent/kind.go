package changeevent

import (
	"strconv"
	"strings"
)

// KindOf maps a column's information_schema DATA_TYPE and COLUMN_TYPE to its Kind.
func KindOf(dataType, columnType string) Kind {
	switch dataType {
	case "tinyint", "smallint", "mediumint", "int", "bigint":
		if strings.Contains(columnType, "unsigned") {
			return KindUint
		}
		return KindInt
	case "decimal":
		return KindDecimal
	case "float":
		return KindFloat
	case "double":
		return KindDouble
	case "bit":
		return KindBit
	case "year":
		return KindYear
	case "date":
		return KindDate
	case "time":
		return KindTime
	case "datetime":
		return KindDateTime
	case "timestamp":
		return KindTimestamp
	case "enum":
		return KindEnum
	case "set":
		return KindSet
	case "json":
		return KindJSON
	case "char", "varchar", "tinytext", "text", "mediumtext", "longtext":
		return KindString
	}
	return KindBytes
}

// FromText converts a column value as MariaDB's text protocol returns it (with the session
// time zone UTC) into the event value of kind (see the package doc); nil is NULL.
func FromText(kind Kind, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	s := string(raw)
	switch kind {
	case KindInt, KindYear:
		return strconv.ParseInt(s, 10, 64)
	case KindUint:
		return strconv.ParseUint(s, 10, 64)
	case KindBit:
		var n uint64
		for _, b := range raw {
			n = n<<8 | uint64(b)
		}
		return n, nil
	case KindFloat:
		f, err := strconv.ParseFloat(s, 32)
		return float32(f), err
	case KindDouble:
		return strconv.ParseFloat(s, 64)
	case KindBytes:
		return append([]byte{}, raw...), nil
	}
	return s, nil
}
