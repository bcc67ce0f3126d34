package store

import (
	"context"
	"errors"
	"testing"
)

func TestPingAt(t *testing.T) {
	s, _, _ := newStore(t)
	for _, l := range []string{"ONE", "QUORUM", "ALL", "ANY", "SERIAL", "LOCAL_QUORUM"} {
		if err := s.PingAt(context.Background(), l); err != nil {
			t.Errorf("PingAt(%s) = %v", l, err)
		}
	}
	if err := s.PingAt(context.Background(), "one"); !errors.Is(err, ErrInvalid) {
		t.Errorf("PingAt(one) = %v, want ErrInvalid", err)
	}
}
