package lock

import (
	"errors"
	"fmt"
)

var (
	// ErrBadName means a lock name is not "keyspace.table.key".
	ErrBadName = errors.New("lock: name must be keyspace.table.key")
	// ErrBadRef means a lock reference is not "$<name>$<seq>".
	ErrBadRef = errors.New("lock: reference must be $keyspace.table.key$<number>")
	// ErrNotFound means the reference is not (or no longer) in its name's queue: it was
	// released, released by force after its lease expired, or never existed.
	ErrNotFound = errors.New("lock: reference not found (released or expired)")
	// ErrNotHolder means the reference is queued but does not hold the lock.
	ErrNotHolder = errors.New("lock: reference does not hold the lock")
	// ErrNoHolder means nobody holds the lock.
	ErrNoHolder = errors.New("lock: no holder")
	// ErrTimeout means the lock was not acquired in time.
	ErrTimeout = errors.New("lock: not acquired in time")
)

// HolderError says who holds the lock a caller asked for.
type HolderError struct {
	Ref    string   // the caller's reference
	Holder []string // the current holders
}

func (e *HolderError) Error() string {
	return fmt.Sprintf("lock: %s does not hold the lock; holders: %v", e.Ref, e.Holder)
}

// Unwrap makes errors.Is(err, ErrNotHolder) true.
func (e *HolderError) Unwrap() error { return ErrNotHolder }
