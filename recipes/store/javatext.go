package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"slices"
	"strconv"
	"strings"
)

// javaText is the text ONAP MUSIC stores when a JSON value is written to a text column:
// the Java string form (valueObj + "") of what Jackson decoded. Objects print as
// {k=v, k2=v2} in document order, arrays as [a, b], strings without quotes, integers as
// written, decimals as Java's Double.toString (1.0, 1.0E10). v is a json.RawMessage (order
// kept), or a decoded value (map keys sorted, since Go maps have no order).
func javaText(v any) (string, error) {
	var b strings.Builder
	var err error
	if raw, ok := v.(json.RawMessage); ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.UseNumber()
		err = writeJavaTokens(&b, dec)
	} else {
		err = writeJavaValue(&b, v)
	}
	return b.String(), err
}

func writeJavaValue(b *strings.Builder, v any) error {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(k + "=")
			if err := writeJavaValue(b, x[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteString(", ")
			}
			if err := writeJavaValue(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case json.RawMessage:
		s, err := javaText(x)
		b.WriteString(s)
		return err
	default:
		b.WriteString(javaScalar(x))
	}
	return nil
}

// writeJavaTokens writes the next JSON value of dec, keeping object key order.
func writeJavaTokens(b *strings.Builder, dec *json.Decoder) error {
	tok, err := dec.Token()
	if err != nil {
		return fmt.Errorf("malformed JSON value: %w", err)
	}
	d, ok := tok.(json.Delim)
	if !ok {
		b.WriteString(javaScalar(tok))
		return nil
	}
	open, sep := d == '{', "="
	b.WriteByte(byte(d))
	for i := 0; dec.More(); i++ {
		if i > 0 {
			b.WriteString(", ")
		}
		if open {
			k, err := dec.Token()
			if err != nil {
				return fmt.Errorf("malformed JSON object: %w", err)
			}
			b.WriteString(fmt.Sprint(k) + sep)
		}
		if err := writeJavaTokens(b, dec); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing delimiter
		return fmt.Errorf("malformed JSON value: %w", err)
	}
	b.WriteString(map[bool]string{true: "}", false: "]"}[open])
	return nil
}

// javaScalar formats a JSON scalar as Java's toString of Jackson's decoding does.
func javaScalar(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		return x
	case json.Number:
		return javaNumber(string(x))
	case float64:
		return javaDouble(x)
	case bool:
		return strconv.FormatBool(x)
	}
	return fmt.Sprint(v)
}

// javaNumber: integers (Integer, Long or BigInteger in Jackson) print as written without
// a leading '+' or zeros; anything with a fraction or exponent is a Double.
func javaNumber(s string) string {
	if !strings.ContainsAny(s, ".eE") {
		if n, ok := new(big.Int).SetString(s, 10); ok {
			return n.String()
		}
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return s
	}
	return javaDouble(f)
}

// javaDouble is Java's Double.toString: plain notation with at least one fractional
// digit for 1e-3 <= |f| < 1e7, else d.dddE<exp>, with the shortest digits that round-trip.
func javaDouble(f float64) string {
	if f == 0 {
		if strconv.FormatFloat(f, 'g', -1, 64)[0] == '-' {
			return "-0.0"
		}
		return "0.0"
	}
	if a := abs(f); a >= 1e-3 && a < 1e7 {
		s := strconv.FormatFloat(f, 'f', -1, 64)
		if !strings.Contains(s, ".") {
			s += ".0"
		}
		return s
	}
	mant, exp, _ := strings.Cut(strconv.FormatFloat(f, 'e', -1, 64), "e")
	if !strings.Contains(mant, ".") {
		mant += ".0"
	}
	e, _ := strconv.Atoi(exp)
	return mant + "E" + strconv.Itoa(e)
}

func abs(f float64) float64 {
	if f < 0 {
		return -f
	}
	return f
}
