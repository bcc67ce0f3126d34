package store

import (
	"errors"
	"fmt"

	"github.com/gocql/gocql"
)

var (
	// ErrInvalid means the request was wrong: a bad name, type, value or missing key.
	ErrInvalid = errors.New("store: invalid request")
	// ErrNotFound means the keyspace, table or column does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrExists means the keyspace, table or index already exists.
	ErrExists = errors.New("store: already exists")
	// ErrConditionFailed means an update's or delete's conditions did not hold.
	ErrConditionFailed = errors.New("store: conditions not met")
	// ErrLock means a critical operation's lock was missing, wrong or not held.
	ErrLock = errors.New("store: lock not held")
	// ErrUnavailable means Cassandra could not serve the request at the consistency asked.
	ErrUnavailable = errors.New("store: cassandra unavailable")
)

func invalid(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, args...))
}

// classify maps a gocql error to the package's sentinels.
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	var re gocql.RequestError
	if errors.As(err, &re) {
		switch re.Code() {
		case gocql.ErrCodeSyntax, gocql.ErrCodeInvalid, gocql.ErrCodeConfig:
			return fmt.Errorf("%w: %s: %s", ErrInvalid, op, re.Message())
		case gocql.ErrCodeAlreadyExists:
			return fmt.Errorf("%w: %s: %s", ErrExists, op, re.Message())
		case gocql.ErrCodeUnavailable, gocql.ErrCodeReadTimeout, gocql.ErrCodeWriteTimeout:
			return fmt.Errorf("%w: %s: %s", ErrUnavailable, op, re.Message())
		}
	}
	if errors.Is(err, gocql.ErrNoConnections) || errors.Is(err, gocql.ErrTimeoutNoResponse) {
		return fmt.Errorf("%w: %s: %w", ErrUnavailable, op, err)
	}
	return fmt.Errorf("store: %s: %w", op, err)
}
