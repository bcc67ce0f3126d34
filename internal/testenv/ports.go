package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// A server a test stops and starts again must find its port free when it comes back.
// A port the kernel handed out for "127.0.0.1:0" lies in the ephemeral range, which the
// kernel also uses for the local end of every outgoing connection: while the server is
// down, any client of any test may be given that port, and the restart then fails with
// "address in use" (it happened to a private Cassandra's storage port in CI). So ports
// are taken below the ephemeral range, and never twice in one test binary.

var (
	portsMu sync.Mutex
	given   = map[int]bool{}
)

// FreePorts returns n distinct ports of 127.0.0.1 that were free a moment ago, below
// the kernel's ephemeral range and outside the local topology's fixed ports (20000 to
// 29999), so that a server can be restarted on them.
func FreePorts(n int) ([]int, error) {
	low := ephemeralLow()
	portsMu.Lock()
	defer portsMu.Unlock()
	var ports []int
	for tries := 0; len(ports) < n; tries++ {
		if tries > 1000 {
			return nil, fmt.Errorf("no free port of 127.0.0.1 below %d after %d tries", low, tries)
		}
		p := 10000 + rand.IntN(low-10000)
		if p >= 20000 && p < 30000 || given[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		given[p] = true
		ports = append(ports, p)
	}
	return ports, nil
}

// FreeAddr is FreePorts(1) as "127.0.0.1:<port>"; it fails the test if there is none.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ports, err := FreePorts(1)
	if err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return "127.0.0.1:" + strconv.Itoa(ports[0])
}

// ephemeralLow is the first port of the kernel's ephemeral range (32768 if unknown).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if low, err := strconv.Atoi(f[0]); err == nil && low > 11000 {
				return low
			}
		}
	}
	return 32768
}
