package testenv

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"
)

// UniqueName returns a fresh lower-case identifier, safe for a database, keyspace, stream
// or ZooKeeper node, derived from the test's name: t_<test>_<random>.
func UniqueName(t testing.TB) string {
	var b strings.Builder
	for _, r := range strings.ToLower(t.Name()) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	base := strings.TrimPrefix(b.String(), "test")
	if len(base) > 24 {
		base = base[:24]
	}
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	return "t_" + strings.Trim(base, "_") + "_" + hex.EncodeToString(rnd[:])
}

// Eventually calls cond until it returns nil or timeout passes, then fails the test with
// cond's last error.
func Eventually(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	wait := 10 * time.Millisecond
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true within %s: %v", timeout, err)
		}
		time.Sleep(wait)
		if wait < 500*time.Millisecond {
			wait *= 2
		}
	}
}
