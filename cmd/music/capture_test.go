package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCaptureRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	unknown := filepath.Join(dir, "unknown.yaml")
	if err := os.WriteFile(unknown, []byte("site: a\ndomain_id: 1\ndsn: root@tcp(127.0.0.1:3306)/\nsurprise: 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := map[string][]string{
		"no site":       {"--dsn", "root@tcp(127.0.0.1:3306)/", "--domain-id", "1"},
		"no domain":     {"--site", "a", "--dsn", "root@tcp(127.0.0.1:3306)/"},
		"bad server id": {"--site", "a", "--dsn", "root@tcp(127.0.0.1:3306)/", "--domain-id", "1", "--server-id", "2"},
		"bad snapshot":  {"--site", "a", "--dsn", "root@tcp(127.0.0.1:3306)/", "--domain-id", "1", "--snapshot", "nodot"},
		"unknown key":   {"--config", unknown},
	}
	for name, args := range cases {
		t.Run(name, func(t *testing.T) {
			if got := runCapture(args); got != 2 {
				t.Fatalf("runCapture(%v) = %d, want 2", args, got)
			}
		})
	}
}
