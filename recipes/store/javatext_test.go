package store

import (
	"encoding/json"
	"testing"
)

// The expected strings are what ONAP MUSIC (Jackson, then valueObj + "") stores.
func TestJavaText(t *testing.T) {
	for _, tc := range []struct {
		in   any
		want string
	}{
		{json.RawMessage(`{}`), "{}"},
		{json.RawMessage(`[]`), "[]"},
		{json.RawMessage(`{"b": 1, "a": {"x": [1, "s", true, null]}}`), "{b=1, a={x=[1, s, true, null]}}"},
		{json.RawMessage(`[1.0, 1e2, 1.5e10, 0.0001, 12345678.9, -0.5]`), "[1.0, 100.0, 1.5E10, 1.0E-4, 1.23456789E7, -0.5]"},
		{json.Number("42"), "42"},
		{json.Number("12345678901234567890"), "12345678901234567890"},
		{json.Number("2.50"), "2.5"},
		{true, "true"},
		{"plain", "plain"},
		{map[string]any{"z": "1", "a": []any{json.Number("2")}}, "{a=[2], z=1}"},
	} {
		got, err := javaText(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("javaText(%s) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestConvertTextTakesAnyJSON(t *testing.T) {
	got, err := convert("text", json.RawMessage(`{"k": "v"}`))
	if err != nil || got != "{k=v}" {
		t.Fatalf("convert(text, object) = %v, %v", got, err)
	}
	if _, err := convert("int", json.RawMessage(`{}`)); err == nil {
		t.Fatal("convert(int, object) succeeded")
	}
	got, err = convert("map<text,int>", json.RawMessage(`{"a": 1}`))
	if m, ok := got.(map[any]any); err != nil || !ok || m["a"] != 1 {
		t.Fatalf("convert(map, raw) = %v, %v", got, err)
	}
}
