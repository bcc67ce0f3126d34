package lock

import (
	"encoding/json"
	"time"
)

// Type is a lock's kind.
type Type string

const (
	Write Type = "WRITE" // exclusive
	Read  Type = "READ"  // shared with other readers
)

// lease is the data of a reference's znode.
type lease struct {
	Type     Type   `json:"type"`
	Owner    string `json:"owner,omitempty"`
	Created  int64  `json:"created_us"` // wall clock at creation, µs
	LeaseMS  int64  `json:"lease_ms"`
	Expires  int64  `json:"expires_ms"` // wall clock, ms; 0 = never
	Acquired int64  `json:"acquired_ms,omitempty"`
}

func (l lease) expired(now time.Time) bool { return l.Expires > 0 && now.UnixMilli() > l.Expires }

func (l *lease) renew(now time.Time) {
	if l.LeaseMS > 0 {
		l.Expires = now.UnixMilli() + l.LeaseMS
	}
}

// renewDue reports whether renewing at now, with period d if positive, changes the
// lease: the period changes, or the lease was last renewed more than a tenth of its
// period ago. Skipping a renewal that is not due saves a ZooKeeper write.
func (l lease) renewDue(now time.Time, d time.Duration) bool {
	if d > 0 && d.Milliseconds() != l.LeaseMS {
		return true
	}
	return l.LeaseMS > 0 && l.Expires-now.UnixMilli() < l.LeaseMS-l.LeaseMS/10
}

func (l lease) encode() []byte { b, _ := json.Marshal(l); return b }

func decodeLease(b []byte) lease {
	var l lease
	_ = json.Unmarshal(b, &l) // a damaged lease reads as a never-expiring write lock
	if l.Type == "" {
		l.Type = Write
	}
	return l
}
