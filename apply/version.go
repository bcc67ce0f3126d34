package apply

import (
	"fmt"
	"strconv"
	"strings"
)

// GTID is a MariaDB global transaction id, domain-server-seq.
type GTID struct {
	Domain uint32
	Server uint32
	Seq    uint64
}

// ParseGTID parses "domain-server-seq".
func ParseGTID(s string) (GTID, error) {
	parts := strings.Split(s, "-")
	if len(parts) != 3 {
		return GTID{}, fmt.Errorf("%w: gtid %q is not domain-server-seq", ErrMalformed, s)
	}
	d, err1 := strconv.ParseUint(parts[0], 10, 32)
	sv, err2 := strconv.ParseUint(parts[1], 10, 32)
	seq, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return GTID{}, fmt.Errorf("%w: gtid %q is not domain-server-seq", ErrMalformed, s)
	}
	return GTID{Domain: uint32(d), Server: uint32(sv), Seq: seq}, nil
}

func (g GTID) String() string { return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq) }

// Version orders the changes of one row for the conflict rule: origin commit time, then
// the origin's GTID domain (one per site), then the GTID sequence number.
type Version struct {
	TsMs   int64
	Domain uint32
	Seq    uint64
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	switch {
	case v.TsMs != w.TsMs:
		return cmp(v.TsMs < w.TsMs)
	case v.Domain != w.Domain:
		return cmp(v.Domain < w.Domain)
	case v.Seq != w.Seq:
		return cmp(v.Seq < w.Seq)
	}
	return 0
}

func cmp(less bool) int {
	if less {
		return -1
	}
	return 1
}

func (v Version) String() string {
	return fmt.Sprintf("ts_ms=%d domain=%d seq=%d", v.TsMs, v.Domain, v.Seq)
}

// MaxTimestampDomain is the highest GTID domain id WriteTimestamp can encode.
const MaxTimestampDomain = 15

// WriteTimestamp packs v into one int64 for stores that resolve conflicts by a write
// timestamp (Cassandra's USING TIMESTAMP): ts_ms<<20 | domain<<16 | seq mod 2^16. It orders
// like Compare except for two changes of one row by one origin within the same
// millisecond whose sequence numbers straddle a multiple of 2^16 (documented limitation).
// Valid until the year 2248.
func (v Version) WriteTimestamp() (int64, error) {
	if v.Domain > MaxTimestampDomain {
		return 0, fmt.Errorf("%w: gtid domain %d above %d cannot be packed into a write timestamp",
			ErrRefused, v.Domain, MaxTimestampDomain)
	}
	if v.TsMs < 0 || v.TsMs >= 1<<43 {
		return 0, fmt.Errorf("%w: commit time %d ms out of range", ErrRefused, v.TsMs)
	}
	return v.TsMs<<20 | int64(v.Domain)<<16 | int64(v.Seq&0xFFFF), nil
}
