package rest

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
)

type regInput struct {
	put bool
	val int
}

// registerModel is a single read/write register; -1 means "no value yet".
var registerModel = porcupine.Model{
	Init: func() any { return -1 },
	Step: func(state, input, output any) (bool, any) {
		in := input.(regInput)
		if in.put {
			return true, in.val
		}
		return output.(int) == state.(int), state
	},
	DescribeOperation: func(input, output any) string {
		if in := input.(regInput); in.put {
			return fmt.Sprintf("put(%d)", in.val)
		}
		return fmt.Sprintf("get() -> %d", output.(int))
	},
}

// criticalOp takes the register's lock over REST, does a critical put or get, releases.
func (e *env) criticalOp(name, rows string, in regInput) int {
	ref := e.lockRef(name)
	defer e.must(200, "DELETE", Prefix+"/locks/release/"+ref, nil)
	ci := map[string]string{"type": "critical", "lockId": ref}
	if in.put {
		e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "reg", "v": in.val}, "consistencyInfo": ci})
		return 0
	}
	out := e.must(200, "PUT", rows+"/criticalget?k=reg", map[string]any{"consistencyInfo": ci})
	res, _ := out["result"].(map[string]any) // none when there is no row, as ONAP
	r, ok := res["row 0"].(map[string]any)
	if !ok {
		return -1
	}
	var v int
	fmt.Sscan(fmt.Sprint(r["v"]), &v)
	return v
}

// A register built on critical put and critical get, used by concurrent REST clients,
// is linearizable; the same run shows mutual exclusion (no operation fails its lock).
func TestLinearizableRegister(t *testing.T) {
	e := newEnv(t)
	e.createKV("reg")
	rows, name := e.table("reg")+"/rows", e.ks+".reg.reg"
	var mu sync.Mutex
	var ops []porcupine.Operation
	var wg sync.WaitGroup
	start := time.Now()
	for c := range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 8 {
				in := regInput{put: (i+c)%2 == 0, val: c*100 + i}
				call := time.Since(start).Nanoseconds()
				out := e.criticalOp(name, rows, in)
				ret := time.Since(start).Nanoseconds()
				mu.Lock()
				ops = append(ops, porcupine.Operation{ClientId: c, Input: in, Call: call, Output: out, Return: ret})
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !porcupine.CheckOperations(registerModel, ops) {
		t.Fatalf("history of %d operations is not linearizable", len(ops))
	}
}
