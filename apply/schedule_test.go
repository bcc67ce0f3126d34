package apply

import (
	"context"
	"testing"
	"time"
)

// A transaction that touches one row twice must not wait for itself.
func TestSchedulerTransactionTouchingARowTwice(t *testing.T) {
	s := newScheduler(4, 2)
	ran := make(chan struct{})
	if err := s.submit(context.Background(), []string{"w", "w"}, func() { close(ran) }); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("the transaction waits for itself")
	}
}
