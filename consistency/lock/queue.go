package lock

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/go-zookeeper/zk"
)

const unsyncedNode = "unsynced"

// entry is one reference in a name's queue.
type entry struct {
	node string
	seq  int64
	typ  Type
}

func parseEntry(node string) (entry, bool) {
	var typ Type
	switch {
	case strings.HasPrefix(node, "w-"):
		typ = Write
	case strings.HasPrefix(node, "r-"):
		typ = Read
	default:
		return entry{}, false
	}
	seq, err := strconv.ParseInt(node[2:], 10, 64)
	if err != nil {
		return entry{}, false
	}
	return entry{node: node, seq: seq, typ: typ}, true
}

func prefix(t Type) string {
	if t == Read {
		return "r-"
	}
	return "w-"
}

// refPath is the znode of reference r of type t: ZooKeeper appends the sequence number
// to the prefix as ten digits.
func (s *Service) refPath(r Ref, t Type) string {
	return fmt.Sprintf("%s/%s%010d", s.dir(r.Name), prefix(t), r.Seq)
}

// queue is a snapshot of a name's queue, in order.
type queue struct {
	entries  []entry
	unsynced bool
}

func (s *Service) queue(n Name) (queue, error) {
	children, _, err := s.conn.Children(s.dir(n))
	if errors.Is(err, zk.ErrNoNode) {
		return queue{}, nil
	}
	if err != nil {
		return queue{}, fmt.Errorf("lock: list %s: %w", n, err)
	}
	var q queue
	for _, c := range children {
		if c == unsyncedNode {
			q.unsynced = true
		} else if e, ok := parseEntry(c); ok {
			q.entries = append(q.entries, e)
		}
	}
	slices.SortFunc(q.entries, func(a, b entry) int { return int(a.seq - b.seq) })
	return q, nil
}

func (q queue) find(seq int64) int {
	for i, e := range q.entries {
		if e.seq == seq {
			return i
		}
	}
	return -1
}

// blocks reports whether e, ahead of a reference of type typ, keeps it from holding.
func blocks(e entry, typ Type) bool { return typ == Write || e.typ == Write }
