// Package changeevent is the change-event model shared by capture and apply: one event per
// changed row (or per schema change), its JSON encoding in a Debezium-compatible envelope,
// its exact value types, and its NATS subject and message id.
//
// # Values
//
// Row images (Before, After, Key) map column names to Go values whose type depends on the
// column's Kind, so every MariaDB value survives the trip exactly:
//
//	KindInt                  int64
//	KindUint, KindBit        uint64 (BIGINT UNSIGNED max included, no float rounding)
//	KindFloat                float32
//	KindDouble               float64
//	KindDecimal              string, e.g. "-12.3400" (scale kept)
//	KindYear                 int64
//	KindDate                 string "YYYY-MM-DD" ("0000-00-00" allowed)
//	KindTime                 string "[-]HH:MM:SS[.ffffff]" (hours up to 838)
//	KindDateTime             string "YYYY-MM-DD HH:MM:SS[.ffffff]": the wall clock as stored
//	KindTimestamp            string "YYYY-MM-DD HH:MM:SS[.ffffff]" in UTC (the binlog keeps epoch seconds)
//	KindString, KindEnum,    string (UTF-8 text, JSON documents, ENUM label, SET labels joined by ",")
//	KindSet, KindJSON
//	KindBytes                []byte (base64 in JSON): binary columns, INET6/UUID (their 16 bytes), and
//	                         text in a character set not carried as UTF-8 (Column.Charset names it)
//
// SQL NULL is a nil value and is distinct from the empty string or empty bytes. Fractional
// seconds carry exactly the column's declared precision.
//
// Text columns name their character set and collation (Column.Charset, Column.Collation).
// Text is UTF-8 (KindString) when MariaDB's conversion of the charset is exact and
// reversible (utf8mb3/utf8mb4/utf16/utf16le and the one-to-one single-byte charsets, latin1
// included), else the column's exact bytes (KindBytes); see charset.go. Key identity follows
// the column's collation: see CollationKey in collate.go.
package changeevent
