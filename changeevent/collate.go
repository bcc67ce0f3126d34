package changeevent

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"
)

// Collation keys.
//
// MariaDB holds two key values equal when their collation does: 'a' and 'A' (and 'á')
// under utf8mb4_unicode_ci or latin1_swedish_ci, 'a' and 'a  ' under every PAD SPACE
// collation (all but the *_nopad_* ones, binary _bin collations included). A primary key
// is one row for MariaDB, so MUSIC's key identity (apply.EncodeKey: row_versions, and the
// MUSIC store's row key) must be the collation's, or two sites writing 'a' and 'A' keep
// two versions of what MariaDB holds as one row and never resolve the conflict.
//
// How: in Go, from MariaDB's own weights. For the collations MariaDB implements as one
// weight string per character (no contractions), the weight of a string is the
// concatenation of its characters' weights (ignorable characters weigh nothing, expanding
// ones such as 'ß' = "ss" under unicode_ci weigh several units), and two values are equal
// exactly when their weights are, after PAD SPACE strips trailing units equal to the space
// character's weight. The per-character weights are MariaDB 10.11's WEIGHT_STRING of every
// character, generated from the server (mariadb/weights_*.txt.gz): *_general_ci and
// *_general_nopad_ci of the Unicode character sets (utf8mb3, utf8mb4, utf16, utf16le,
// ucs2, utf32; every supplementary character weighs 0xFFFD there, as in MariaDB),
// *_unicode_ci and *_unicode_nopad_ci (UCA 4.0.0, supplementary characters 0xFFFD as
// well), and every collation of the single-byte character sets except latin2_czech_cs
// (contractions). *_bin collations compare code points (or bytes), with PAD SPACE for all
// but *_nopad_bin.
//
// Why not normalise in Go with golang.org/x/text/collate or case folding plus Unicode
// normalisation: those implement other versions of the UCA and other tailorings than
// MariaDB (general_ci holds 'ß' = 's' and all supplementary characters equal; unicode_ci
// ignores control characters; PAD SPACE has no Unicode equivalent), and any disagreement
// is either a conflict never detected or two distinct rows merged. Why not ask MariaDB
// (WEIGHT_STRING) per key: the key is computed where no MariaDB is at hand (the Cassandra
// sink, events from snapshots and peers), must be identical at every site and in the
// store, and a round trip per row would halve capture's throughput. Tables generated from
// the server are MariaDB's answer without the round trip; a test checks them against the
// server.
//
// Collations without a table here (the Asian multi-byte *_ci, language tailorings such as
// utf8mb4_german2_ci, unicode_520, uca1400) fall back to the exact value (with PAD SPACE
// trailing spaces stripped for *_bin): keys they hold equal but MUSIC does not stay two
// rows in row_versions, as before. CollationSupported tells which is which.

var (
	uniOnce    sync.Once
	uniWeights map[string]*uniTable // "general_ci", "unicode_ci"
	sbOnceW    sync.Once
	sbWeights  map[string]*[256][]byte // by full collation name
)

type uniTable struct {
	off [65537]uint32
	w   []byte // big-endian uint16 weights
}

func (t *uniTable) weight(r rune) []byte {
	if r < 0 || r > 0xFFFF {
		return []byte{0xFF, 0xFD}
	}
	return t.w[t.off[r]:t.off[r+1]]
}

func loadUni() {
	uniWeights = map[string]*uniTable{}
	for _, fam := range []string{"general_ci", "unicode_ci"} {
		t := &uniTable{}
		sc := bufio.NewScanner(bytes.NewReader(loadGz("weights_" + fam + ".txt.gz")))
		r := 0
		for sc.Scan() && r < 65536 {
			h := strings.TrimSpace(sc.Text())
			b, err := hex.DecodeString(h)
			if err != nil || h == "NULL" {
				b = binary.BigEndian.AppendUint16(nil, uint16(r))
			}
			t.off[r] = uint32(len(t.w))
			t.w = append(t.w, b...)
			r++
		}
		for ; r <= 65536; r++ {
			t.off[r] = uint32(len(t.w))
		}
		uniWeights[fam] = t
	}
}

func loadSB() {
	sbWeights = map[string]*[256][]byte{}
	sc := bufio.NewScanner(bytes.NewReader(loadGz("weights_8bit.txt.gz")))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 3 {
			continue
		}
		i, err := strconv.Atoi(f[1])
		if err != nil || i < 0 || i > 255 {
			continue
		}
		w, err := hex.DecodeString(strings.TrimSpace(f[2]))
		if err != nil {
			continue
		}
		t := sbWeights[f[0]]
		if t == nil {
			t = new([256][]byte)
			sbWeights[f[0]] = t
		}
		t[i] = w
	}
}

func unicodeCharset(cs string) bool {
	switch cs {
	case "utf8mb4", "utf8mb3", "utf8", "utf16", "utf16le", "ucs2", "utf32":
		return true
	}
	return false
}

// collationPlan says how a collation compares: by a weight table, by code point/byte
// (bin), or unsupported; and whether it pads with spaces.
type collationPlan struct {
	uni  *uniTable
	sb   *[256][]byte
	bin  bool
	pad  bool
	uniC bool // a Unicode character set
}

func planOf(c Column) (collationPlan, bool) {
	if c.Collation == "" || c.Charset == "" || c.Charset == "binary" {
		return collationPlan{}, false
	}
	suffix := strings.TrimPrefix(c.Collation, c.Charset+"_")
	p := collationPlan{pad: !strings.Contains(suffix, "nopad"), uniC: unicodeCharset(c.Charset)}
	switch {
	case suffix == "bin" || suffix == "nopad_bin":
		p.bin = true
		return p, true
	case p.uniC:
		uniOnce.Do(loadUni)
		switch suffix {
		case "general_ci", "general_nopad_ci":
			p.uni = uniWeights["general_ci"]
		case "unicode_ci", "unicode_nopad_ci":
			p.uni = uniWeights["unicode_ci"]
		default:
			return p, false
		}
		return p, true
	}
	sbOnceW.Do(loadSB)
	if t := sbWeights[c.Collation]; t != nil {
		p.sb = t
		return p, true
	}
	return p, false
}

// CollationSupported reports whether CollationKey follows column c's collation exactly
// (true for non-text columns too, which compare exactly).
func CollationSupported(c Column) bool {
	if c.Collation == "" {
		return true
	}
	_, ok := planOf(c)
	return ok
}

// Weights is a collation weight string (see CollationKey).
type Weights []byte

// CollationKey returns the value that identifies v among the values of column c as
// MariaDB's collation compares them (see "Collation keys" above): v itself for non-text
// columns and exact collations; v without trailing spaces (same type) for PAD SPACE _bin
// collations; otherwise the Weights of v. Values MariaDB holds equal get equal keys.
func CollationKey(c Column, v any) any {
	if v == nil {
		return nil
	}
	p, ok := planOf(c)
	if !ok {
		if strings.HasSuffix(c.Collation, "_bin") && !strings.Contains(c.Collation, "nopad") && !unicodeCharset(c.Charset) {
			return trimSpaces(v) // PAD SPACE of an unsupported charset's _bin
		}
		return v
	}
	if p.bin {
		if !p.pad {
			return v
		}
		if p.uniC {
			if b, ok := v.([]byte); ok { // ucs2/utf32 bytes: trim U+0020 code units
				w := 4
				if c.Charset == "ucs2" || c.Charset == "utf16" || c.Charset == "utf16le" {
					w = 2
				}
				sp := make([]byte, w)
				if c.Charset == "utf16le" {
					sp[0] = ' '
				} else {
					sp[w-1] = ' '
				}
				for len(b) >= w && bytes.Equal(b[len(b)-w:], sp) {
					b = b[:len(b)-w]
				}
				return b
			}
		}
		return trimSpaces(v)
	}
	var w []byte
	var space []byte
	if p.uni != nil {
		space = p.uni.weight(' ')
		for _, r := range runesOf(c.Charset, v) {
			w = append(w, p.uni.weight(r)...)
		}
	} else {
		space = p.sb[' ']
		var raw []byte
		switch x := v.(type) {
		case []byte:
			raw = x
		case string:
			b, err := EncodeText(c.Charset, x)
			if err != nil {
				return v
			}
			raw = b
		default:
			return v
		}
		for _, b := range raw {
			w = append(w, p.sb[b]...)
		}
	}
	if p.pad && len(space) > 0 {
		for len(w) >= len(space) && bytes.Equal(w[len(w)-len(space):], space) {
			w = w[:len(w)-len(space)]
		}
	}
	if w == nil {
		w = []byte{}
	}
	return Weights(w)
}

func trimSpaces(v any) any {
	switch x := v.(type) {
	case string:
		return strings.TrimRight(x, " ")
	case []byte:
		return bytes.TrimRight(x, " ")
	}
	return v
}

// runesOf decodes a Unicode column's value: a UTF-8 string, or ucs2/utf32 bytes.
func runesOf(cs string, v any) []rune {
	switch x := v.(type) {
	case string:
		return []rune(x)
	case []byte:
		var rs []rune
		switch cs {
		case "ucs2":
			for i := 0; i+1 < len(x); i += 2 {
				rs = append(rs, rune(binary.BigEndian.Uint16(x[i:])))
			}
		case "utf32":
			for i := 0; i+3 < len(x); i += 4 {
				rs = append(rs, rune(binary.BigEndian.Uint32(x[i:])))
			}
		default:
			for len(x) > 0 {
				r, n := utf8.DecodeRune(x)
				rs = append(rs, r)
				x = x[n:]
			}
		}
		return rs
	}
	return nil
}
