package capture

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// GTID is one MariaDB global transaction id, domain-server-seq.
type GTID struct {
	Domain, Server uint32
	Seq            uint64
}

func (g GTID) String() string { return fmt.Sprintf("%d-%d-%d", g.Domain, g.Server, g.Seq) }

// ParseGTID parses "domain-server-seq".
func ParseGTID(s string) (GTID, error) {
	parts := strings.Split(strings.TrimSpace(s), "-")
	if len(parts) != 3 {
		return GTID{}, fmt.Errorf("gtid %q: want domain-server-seq", s)
	}
	d, err1 := strconv.ParseUint(parts[0], 10, 32)
	sv, err2 := strconv.ParseUint(parts[1], 10, 32)
	seq, err3 := strconv.ParseUint(parts[2], 10, 64)
	if err1 != nil || err2 != nil || err3 != nil {
		return GTID{}, fmt.Errorf("gtid %q: want three decimal numbers", s)
	}
	return GTID{Domain: uint32(d), Server: uint32(sv), Seq: seq}, nil
}

// Position is a MariaDB GTID position: the last transaction of each domain.
type Position map[uint32]GTID

// ParsePosition parses "d-s-n,d-s-n" ("" is the empty position).
func ParsePosition(s string) (Position, error) {
	p := Position{}
	for _, part := range strings.Split(s, ",") {
		if strings.TrimSpace(part) == "" {
			continue
		}
		g, err := ParseGTID(part)
		if err != nil {
			return nil, err
		}
		p[g.Domain] = g
	}
	return p, nil
}

// String formats the position as MariaDB does, domains in order.
func (p Position) String() string {
	doms := make([]int, 0, len(p))
	for d := range p {
		doms = append(doms, int(d))
	}
	sort.Ints(doms)
	parts := make([]string, len(doms))
	for i, d := range doms {
		parts[i] = p[uint32(d)].String()
	}
	return strings.Join(parts, ",")
}

// Clone copies p.
func (p Position) Clone() Position {
	c := make(Position, len(p))
	for k, v := range p {
		c[k] = v
	}
	return c
}

// Contains reports whether transaction g is at or before p.
func (p Position) Contains(g GTID) bool {
	cur, ok := p[g.Domain]
	return ok && cur.Seq >= g.Seq
}

// resumePoint is where a binlog dump resumes: the GTID position and, when known, the
// binlog file and offset of the same point (used when the server cannot find the GTID
// position, see Capturer.Run).
type resumePoint struct {
	Pos    Position
	File   string
	Offset uint32
	// ClockUs is the commit clock after the last complete transaction (see reader.clockUs).
	ClockUs int64
}

func (r resumePoint) hasFile() bool { return r.File != "" && r.Offset > 0 }

// Only returns the part of p of one domain.
func (p Position) Only(domain uint32) Position {
	out := Position{}
	if g, ok := p[domain]; ok {
		out[domain] = g
	}
	return out
}
