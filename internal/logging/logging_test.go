package logging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestValidateNamesField(t *testing.T) {
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"bad level":  {Options{Level: "loud", Format: "json"}, "log.level"},
		"bad format": {Options{Level: "info", Format: "xml"}, "log.format"},
	} {
		t.Run(name, func(t *testing.T) {
			err := tc.o.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Validate() = %v, want an error naming %s", err, tc.want)
			}
		})
	}
}

func TestNewWritesJSONToFileAndSlogBridge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "music.log")
	l, err := New(Options{Level: "info", Format: "json", File: path})
	if err != nil {
		t.Fatal(err)
	}
	l.Info("hello")
	Slog(l).Info("from slog", "site", "a")
	_ = l.Sync()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"msg":"hello"`, `"msg":"from slog"`, `"site":"a"`} {
		if !strings.Contains(string(b), want) {
			t.Fatalf("log %q lacks %s", b, want)
		}
	}
}
