package prom

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestCallUndoesLateSuccess(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	answer := make(chan struct{})
	undone := make(chan int, 1)
	_, err := call(ctx, func() (int, error) { <-answer; return 7, nil }, func(v int) { undone <- v })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call = %v, want the deadline", err)
	}
	close(answer)
	select {
	case v := <-undone:
		if v != 7 {
			t.Fatalf("undo(%d), want undo(7)", v)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("late success not undone")
	}

	v, err := call(context.Background(), func() (int, error) { return 8, nil }, func(int) { t.Error("undo of an answered call") })
	if v != 8 || err != nil {
		t.Fatalf("call = %d, %v", v, err)
	}
}
