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

// Version orders the changes of one row for the conflict rule: origin commit time (µs, on
// the origin's commit clock: capture gives every transaction of a site a strictly greater
// time than the one before, see capture's commitClock), then the origin's GTID domain (one
// per site), then the GTID sequence number.
type Version struct {
	TsUs   int64
	Domain uint32
	Seq    uint64
}

// Compare returns -1, 0 or +1 as v is older than, equal to or newer than w.
func (v Version) Compare(w Version) int {
	switch {
	case v.TsUs != w.TsUs:
		return cmp(v.TsUs < w.TsUs)
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
	return fmt.Sprintf("ts_us=%d domain=%d seq=%d", v.TsUs, v.Domain, v.Seq)
}

// MaxTimestampDomain is the highest GTID domain id WriteTimestamp can encode.
const MaxTimestampDomain = 15

// WriteTimestamp packs v into one int64 for stores that resolve conflicts by a write
// timestamp (Cassandra's USING TIMESTAMP): ts_us<<4 | domain. It orders like Compare
// because the commit clock never gives two transactions of one origin the same time, so
// the sequence number is not needed. (Events from before the commit clock, with whole
// seconds only, can tie; Cassandra then keeps the greater cell value.) Valid for 18,000
// years.
func (v Version) WriteTimestamp() (int64, error) {
	if v.Domain > MaxTimestampDomain {
		return 0, fmt.Errorf("%w: gtid domain %d above %d cannot be packed into a write timestamp",
			ErrRefused, v.Domain, MaxTimestampDomain)
	}
	if v.TsUs < 0 || v.TsUs >= 1<<59 {
		return 0, fmt.Errorf("%w: commit time %d µs out of range", ErrRefused, v.TsUs)
	}
	return v.TsUs<<4 | int64(v.Domain), nil
}

// VersionOf returns the version a write timestamp encodes (without the sequence number).
func VersionOf(writeTimestamp int64) Version {
	return Version{TsUs: writeTimestamp >> 4, Domain: uint32(writeTimestamp & 0xF)}
}
