package changeevent

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"embed"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
)

// Character sets.
//
// Every text value is carried in one of two forms, decided per column by its character
// set (never per value, so a column's kind and its MUSIC store type are stable):
//
//   - KindString (Go string, UTF-8) for the character sets whose every storable value has
//     exactly one UTF-8 form that MariaDB converts back to the same bytes: utf8mb3, utf8mb4,
//     utf16, utf16le (MariaDB refuses ill-formed values in these), and the single-byte
//     character sets whose 256 bytes MariaDB 10.11 maps one to one onto Unicode: cp850,
//     cp852, cp866, keybcs2, koi8r, koi8u, latin1 (cp1252 with its 5 undefined bytes on the
//     C1 controls U+0081, U+008D, U+008F, U+0090, U+009D), latin2, latin5, latin7, macce,
//     macroman. The single-byte tables are MariaDB's own (generated from
//     CONVERT(... USING utf8mb4) on 10.11, in mariadb/charsets_8bit.txt.gz), not another
//     library's idea of the code page, so capture's UTF-8 and MariaDB's conversion of it
//     back (apply writes text through a utf8mb4 connection) agree byte for byte.
//   - KindBytes (Go []byte, base64 in JSON) holding the column's exact bytes for every
//     other character set: the multi-byte Asian ones (big5, cp932, eucjpms, euckr, gb2312,
//     gbk, sjis, ujis), ucs2 and utf32 (MariaDB stores unpaired surrogates there), and the
//     single-byte ones with undefined or ambiguous bytes (ascii, armscii8, cp1250, cp1251,
//     cp1256, cp1257, dec8, geostd8, greek, hebrew, hp8, swe7, tis620): MariaDB stores any
//     byte in a single-byte column, including bytes its charset does not define. Apply
//     writes []byte as a _binary literal, which MariaDB stores byte-exact into a text
//     column; the MUSIC store keeps a blob.
//
// Column.Charset and Column.Collation name the column's character set and collation
// (MariaDB names, e.g. "latin1", "latin1_swedish_ci"), so a consumer can decode a
// KindBytes text column (DecodeText) and compare keys as MariaDB does (see CollationKey).
// A column with Charset "" or "binary" is not text.

//go:embed mariadb/*.gz
var mariadbData embed.FS

// Collation is one MariaDB collation.
type Collation struct {
	ID      int
	Name    string // full name, e.g. "utf8mb4_unicode_ci"
	Charset string
}

var (
	collOnce sync.Once
	collByID map[int]Collation
)

func loadGz(name string) []byte {
	f, err := mariadbData.Open("mariadb/" + name)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		panic(err)
	}
	var b bytes.Buffer
	if _, err := b.ReadFrom(zr); err != nil {
		panic(err)
	}
	return b.Bytes()
}

// CollationByID returns the MariaDB 10.11 collation with the given id (as table-map
// events carry it), from information_schema.COLLATION_CHARACTER_SET_APPLICABILITY.
func CollationByID(id int) (Collation, bool) {
	collOnce.Do(func() {
		collByID = map[int]Collation{}
		sc := bufio.NewScanner(bytes.NewReader(loadGz("collations.txt.gz")))
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 3 {
				continue
			}
			n, _ := strconv.Atoi(f[0])
			collByID[n] = Collation{ID: n, Name: f[1], Charset: f[2]}
		}
	})
	c, ok := collByID[id]
	return c, ok
}

var (
	sbOnce   sync.Once
	sbDecode map[string]*[256]rune
	sbEncode map[string]map[rune]byte
)

func singleByte(cs string) (*[256]rune, map[rune]byte) {
	sbOnce.Do(func() {
		sbDecode, sbEncode = map[string]*[256]rune{}, map[string]map[rune]byte{}
		sc := bufio.NewScanner(bytes.NewReader(loadGz("charsets_8bit.txt.gz")))
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			f := strings.Fields(sc.Text())
			if len(f) != 257 {
				continue
			}
			var t [256]rune
			enc := map[rune]byte{}
			for i, h := range f[1:] {
				var b [4]byte
				n := len(h) / 2
				for j := 0; j < n; j++ {
					v, _ := strconv.ParseUint(h[2*j:2*j+2], 16, 8)
					b[j] = byte(v)
				}
				r, _ := utf8.DecodeRune(b[:n])
				t[i] = r
				enc[r] = byte(i)
			}
			sbDecode[f[0]], sbEncode[f[0]] = &t, enc
		}
	})
	return sbDecode[cs], sbEncode[cs]
}

// TextCharset reports whether a column of character set cs carries its values as UTF-8
// strings (KindString) rather than as its bytes (KindBytes); see the package doc.
func TextCharset(cs string) bool {
	switch cs {
	case "utf8mb4", "utf8mb3", "utf8", "utf16", "utf16le":
		return true
	}
	d, _ := singleByte(cs)
	return d != nil
}

// ErrCharset is a value that is not valid in its character set.
var ErrCharset = errors.New("changeevent: invalid text for its character set")

// DecodeText converts a value's bytes in character set cs to UTF-8, exactly and
// reversibly, for the character sets of TextCharset; any other cs is an error.
func DecodeText(cs string, b []byte) (string, error) {
	switch cs {
	case "utf8mb4", "utf8mb3", "utf8":
		if !utf8.Valid(b) {
			return "", fmt.Errorf("%w: %s %q", ErrCharset, cs, b)
		}
		return string(b), nil
	case "utf16", "utf16le":
		if len(b)%2 != 0 {
			return "", fmt.Errorf("%w: %s of %d bytes", ErrCharset, cs, len(b))
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			if cs == "utf16" {
				u[i] = binary.BigEndian.Uint16(b[2*i:])
			} else {
				u[i] = binary.LittleEndian.Uint16(b[2*i:])
			}
		}
		rs := utf16.Decode(u)
		if !equalU16(utf16.Encode(rs), u) { // an unpaired surrogate
			return "", fmt.Errorf("%w: %s %x", ErrCharset, cs, b)
		}
		return string(rs), nil
	}
	d, _ := singleByte(cs)
	if d == nil {
		return "", fmt.Errorf("%w: %s is carried as bytes, not text", ErrCharset, cs)
	}
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		sb.WriteRune(d[c])
	}
	return sb.String(), nil
}

func equalU16(a, b []uint16) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// EncodeText converts UTF-8 text back to its bytes in character set cs (the inverse of
// DecodeText).
func EncodeText(cs, s string) ([]byte, error) {
	switch cs {
	case "utf8mb4", "utf8mb3", "utf8", "":
		return []byte(s), nil
	case "utf16", "utf16le":
		u := utf16.Encode([]rune(s))
		b := make([]byte, 2*len(u))
		for i, x := range u {
			if cs == "utf16" {
				binary.BigEndian.PutUint16(b[2*i:], x)
			} else {
				binary.LittleEndian.PutUint16(b[2*i:], x)
			}
		}
		return b, nil
	}
	_, enc := singleByte(cs)
	if enc == nil {
		return nil, fmt.Errorf("%w: %s is carried as bytes, not text", ErrCharset, cs)
	}
	b := make([]byte, 0, len(s))
	for _, r := range s {
		c, ok := enc[r]
		if !ok {
			return nil, fmt.Errorf("%w: %U has no %s byte", ErrCharset, r, cs)
		}
		b = append(b, c)
	}
	return b, nil
}

// SetCharset records a column's character set and collation and makes a text column
// whose character set is not carried as UTF-8 (see TextCharset) a KindBytes column. Use it
// wherever columns are described (table maps, information_schema).
func (c *Column) SetCharset(charset, collation string) {
	if charset == "" || charset == "binary" {
		return
	}
	c.Charset, c.Collation = charset, collation
	if c.Kind == KindString && !TextCharset(charset) {
		c.Kind = KindBytes
	}
}

// FromRaw converts a column value as MariaDB's text protocol returns it with
// character_set_results=binary (text in the column's own character set) into the event
// value of the column (see the package doc); nil is NULL. INET6 and UUID must be read as
// CAST(col AS BINARY(16)) to get the bytes the binlog carries.
func FromRaw(c Column, raw []byte) (any, error) {
	if raw == nil {
		return nil, nil
	}
	switch c.Kind {
	case KindString, KindEnum, KindSet:
		if c.Charset != "" && c.Charset != "binary" {
			return DecodeText(c.Charset, raw)
		}
	case KindBytes:
		return append([]byte{}, raw...), nil
	}
	return FromText(c.Kind, raw)
}

// ReadSession is the session setting under which a reader of a table gets values that
// FromRaw turns into exactly what capture publishes: results in each column's own
// character set, TIMESTAMP in UTC.
const ReadSession = "SET time_zone='+00:00', character_set_results=binary"

// SelectExpr is how a reader selects column c (quoted is its quoted name) so that FromRaw
// gets the value capture publishes: INET6 and UUID as the bytes the binlog carries, INET4
// as its 4 bytes, FLOAT through DOUBLE (its text form keeps only 6 digits).
func SelectExpr(c Column, quoted string) string {
	t := strings.ToLower(c.SQLType)
	switch {
	case t == "inet6", t == "uuid":
		return "CAST(" + quoted + " AS BINARY(16))"
	case t == "inet4":
		return "CAST(" + quoted + " AS BINARY(4))"
	case strings.HasPrefix(t, "float"):
		return "CAST(" + quoted + " AS DOUBLE)"
	}
	return quoted
}
