package replbench

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// clockTick is the unit of /proc/<pid>/stat's CPU times (USER_HZ, 100 on Linux).
const clockTick = 10 * time.Millisecond

// ProcCPU returns the CPU time (user plus system) process pid has used so far, read from
// /proc/<pid>/stat.
func ProcCPU(pid int) (time.Duration, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("replbench: cpu of %d: %w", pid, err)
	}
	// Fields after the command name (which may hold spaces) start after the last ')':
	// state is field 3, utime 14, stime 15.
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("replbench: cpu of %d: short stat %q", pid, s)
	}
	var ticks int64
	for _, v := range f[11:13] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("replbench: cpu of %d: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * clockTick, nil
}

// Procs names processes whose CPU a run measures.
type Procs map[string]int

// CPU is CPU time per process name.
type CPU map[string]time.Duration

// Sample reads every process's CPU time so far; a process that is gone counts 0.
func (p Procs) Sample() CPU {
	out := CPU{}
	for name, pid := range p {
		out[name], _ = ProcCPU(pid)
	}
	return out
}

// Since returns the CPU each process used since before.
func (c CPU) Since(before CPU) CPU {
	out := CPU{}
	for name, t := range c {
		out[name] = t - before[name]
	}
	return out
}

// Total is the sum over every process.
func (c CPU) Total() time.Duration {
	var t time.Duration
	for _, v := range c {
		t += v
	}
	return t
}

// PidFile reads a process id from a pid file.
func PidFile(path string) (int, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("replbench: %w", err)
	}
	return strconv.Atoi(strings.TrimSpace(string(raw)))
}
