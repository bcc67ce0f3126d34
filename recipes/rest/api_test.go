package rest

import (
	"fmt"
	"strings"
	"testing"

	"github.com/music-coord/music/internal/testenv"
)

func TestEndpoints(t *testing.T) {
	e := newEnv(t)
	// service
	if out := e.must(200, "GET", Prefix+"/version", nil, "Authorization", ""); out["version"] == nil {
		t.Fatalf("version: %v", out)
	}
	for _, p := range []string{"pingCassandra", "pingZookeeper", "musicHealthCheck"} {
		e.must(200, "GET", Prefix+"/service/"+p, nil)
	}
	if out := e.must(200, "GET", Prefix+"/openapi.yaml", nil); !strings.Contains(fmt.Sprint(out["raw"]), "openapi: 3") {
		t.Fatalf("openapi: %v", out)
	}
	// keyspaces
	ks := testenv.UniqueName(t)
	e.must(200, "POST", Prefix+"/keyspaces/"+ks, map[string]any{
		"replicationInfo": map[string]any{"class": "SimpleStrategy", "replication_factor": 1}, "durabilityOfWrites": "true",
		"consistencyInfo": map[string]string{"type": "eventual"}})
	e.must(200, "DELETE", Prefix+"/keyspaces/"+ks, nil)
	// tables and index
	e.must(200, "POST", e.table("emp"), map[string]any{
		"fields":     map[string]string{"emp_name": "varchar", "emp_salary": "varint", "dept": "text", "tags": "map<text,int>"},
		"primaryKey": "emp_name"})
	e.must(200, "POST", e.table("emp")+"/index/dept?index_name=emp_dept", nil)
	// eventual rows
	rows := e.table("emp") + "/rows"
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"emp_name": "tom", "emp_salary": 50, "dept": "ops",
		"tags": map[string]any{"a": 1}}, "consistencyInfo": map[string]string{"type": "eventual"}})
	out := e.must(200, "GET", rows+"?emp_name=tom", nil)
	row := out["result"].(map[string]any)["row 0"].(map[string]any)
	if fmt.Sprint(row["emp_salary"]) != "50" || row["dept"] != "ops" {
		t.Fatalf("select: %v", out)
	}
	e.must(200, "GET", rows+"?dept=ops", nil) // by secondary index
	// an eventual update ignores its conditions, as ONAP's
	e.must(200, "PUT", rows+"?emp_name=tom", map[string]any{"values": map[string]any{"emp_salary": 60},
		"conditions": map[string]any{"emp_salary": 49}, "consistencyInfo": map[string]string{"type": "eventual"}})
	// locks and critical rows
	name := e.ks + ".emp.tom"
	ref := e.lockRef(name)
	second := e.must(200, "POST", Prefix+"/locks/create/"+name, map[string]string{"locktype": "WRITE"})["lock"].(map[string]any)["lock"].(string)
	e.must(400, "GET", Prefix+"/locks/acquire/"+second, nil)
	for _, p := range []string{"/locks/enquire/", "/locks/"} {
		if out := e.must(200, "GET", Prefix+p+name, nil); out["lock"].(map[string]any)["lock-holder"] != ref {
			t.Fatalf("%s: %v, want holder %s", p, out, ref)
		}
	}
	e.must(200, "GET", Prefix+"/locks/holders/"+name, nil)
	e.must(200, "POST", Prefix+"/locks/acquire-with-lease/"+ref, map[string]any{"leasePeriod": 60000})
	crit := map[string]string{"type": "critical", "lockId": ref}
	e.must(400, "PUT", rows+"?emp_name=tom", map[string]any{"values": map[string]any{"emp_salary": 70},
		"consistencyInfo": map[string]string{"type": "critical", "lockId": second}})
	e.must(400, "PUT", rows+"?emp_name=tom", map[string]any{"values": map[string]any{"emp_salary": 70},
		"conditions": map[string]any{"emp_salary": 59}, "consistencyInfo": map[string]string{"type": "critical", "lockId": ref}})
	e.must(200, "PUT", rows+"?emp_name=tom", map[string]any{"values": map[string]any{"emp_salary": 70},
		"conditions": map[string]any{"emp_salary": 60}, "consistencyInfo": crit})
	out = e.must(200, "PUT", rows+"/criticalget?emp_name=tom", map[string]any{"consistencyInfo": crit})
	if fmt.Sprint(out["result"].(map[string]any)["row 0"].(map[string]any)["emp_salary"]) != "70" {
		t.Fatalf("criticalget: %v", out)
	}
	e.must(200, "GET", rows+"?emp_name=tom", map[string]any{"consistencyInfo": crit}, "X-minorVersion", "1", "X-patchVersion", "0")
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"emp_name": "tom", "emp_salary": 80}, "consistencyInfo": crit})
	if out := e.must(200, "DELETE", Prefix+"/locks/release/"+ref, nil); out["lock"].(map[string]any)["lock-status"] != "UNLOCKED" {
		t.Fatalf("release: %v", out)
	}
	e.must(400, "DELETE", Prefix+"/locks/delete/"+name, nil) // a name, not a reference
	e.must(200, "DELETE", Prefix+"/locks/delete/"+second, nil)
	e.must(400, "GET", Prefix+"/locks/enquire/"+name, nil)
	// atomic, delete, drop
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"emp_name": "ann", "emp_salary": 1},
		"consistencyInfo": map[string]string{"type": "atomic"}})
	e.must(200, "DELETE", rows+"?emp_name=ann", map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}})
	// tom was written critically: an eventual delete (current time) loses to it, by design.
	e.must(200, "DELETE", rows+"?emp_name=tom", map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}})
	if out := e.must(200, "GET", rows, nil); len(out["result"].(map[string]any)) != 0 {
		t.Fatalf("rows after delete: %v", out)
	}
	e.must(200, "DELETE", e.table("emp"), nil)
}

func TestAuth(t *testing.T) {
	e := newEnv(t)
	path := Prefix + "/locks/create/" + e.ks + ".t.k"
	e.must(401, "POST", path, nil, "Authorization", "")
	e.must(401, "POST", path, nil, "Authorization", "Basic YWxpY2U6d3Jvbmc=") // alice:wrong
	e.must(200, "POST", path, nil, "Authorization", "", "userId", "alice", "password", "secret")
	e.must(403, "POST", path, nil, "ns", "other")
	e.must(403, "POST", path, nil, "Authorization", "Basic Ym9iOmJvYnB3") // bob: keyspace not in his namespace
	e.must(403, "POST", Prefix+"/keyspaces/system_auth", map[string]any{"replicationInfo": map[string]any{"class": "SimpleStrategy", "replication_factor": 1}})
}

// Bad input gets a 4xx with a message, never a 500.
func TestBadInput(t *testing.T) {
	e := newEnv(t)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	big := `{"values": {"k": "` + strings.Repeat("x", 70<<10) + `"}}`
	for name, tc := range map[string]struct {
		method, path string
		body         any
		want         int
	}{
		"keyspace name":     {"POST", Prefix + "/keyspaces/t_x;drop", map[string]any{"replicationInfo": map[string]any{"class": "SimpleStrategy", "replication_factor": 1}}, 400},
		"replication class": {"POST", Prefix + "/keyspaces/t_x", map[string]any{"replicationInfo": map[string]any{"class": "Evil'}"}}, 400},
		"no body":           {"POST", Prefix + "/keyspaces/t_x", nil, 400},
		"bad json":          {"POST", rows, `{"values": `, 400},
		"wrong json type":   {"POST", rows, `{"values": [1]}`, 400},
		"trailing data":     {"POST", rows, `{} {}`, 400},
		"too large":         {"POST", rows, big, 413},
		"column injection":  {"POST", rows, map[string]any{"values": map[string]any{"k) VALUES ('a'); --": "x"}}, 400},
		"column type":       {"POST", e.table("t2"), map[string]any{"fields": map[string]string{"k": "text) WITH x", "PRIMARY KEY": "(k)"}}, 400},
		"primary key":       {"POST", e.table("t2"), map[string]any{"fields": map[string]string{"k": "text"}, "primaryKey": "((k"}, 400},
		"unknown column":    {"GET", rows + "?nope=1", nil, 400},
		"unknown table":     {"GET", e.table("nope") + "/rows", nil, 400},
		"bad value":         {"POST", rows, map[string]any{"values": map[string]any{"k": "a", "v": "many"}}, 400},
		"bad consistency":   {"POST", rows, map[string]any{"values": map[string]any{"k": "a"}, "consistencyInfo": map[string]string{"type": "strong"}}, 400},
		"critical no lock":  {"POST", rows, map[string]any{"values": map[string]any{"k": "a"}, "consistencyInfo": map[string]string{"type": "critical"}}, 400},
		"bad lock ref":      {"POST", rows, map[string]any{"values": map[string]any{"k": "a"}, "consistencyInfo": map[string]string{"type": "critical", "lockId": "nope"}}, 400},
		"update no key":     {"PUT", rows, map[string]any{"values": map[string]any{"v": 1}}, 400},
		"lock name":         {"POST", Prefix + "/locks/create/nodots", nil, 400},
		"lock ref":          {"GET", Prefix + "/locks/acquire/" + e.ks + ".kv.k$x", nil, 400},
		"lock type":         {"POST", Prefix + "/locks/create/" + e.ks + ".kv.a", map[string]any{"locktype": "EXCLUSIVE"}, 400},
		"no such path":      {"GET", Prefix + "/nothing", nil, 404},
		"repeated key":      {"GET", rows + "?k=a&k=b", nil, 400},
	} {
		t.Run(name, func(t *testing.T) {
			code, out := e.call(tc.method, tc.path, tc.body)
			if code != tc.want || out["status"] != "FAILURE" || out["error"] == "" {
				t.Fatalf("%s %s = %d %v, want %d FAILURE with an error", tc.method, tc.path, code, out, tc.want)
			}
		})
	}
}

func TestLeaseExpiryAndFencingREST(t *testing.T) {
	e := newEnv(t)
	e.createKV("kv")
	rows := e.table("kv") + "/rows"
	name := e.ks + ".kv.x"
	a := e.must(200, "POST", Prefix+"/locks/create/"+name, map[string]any{"leasePeriod": 300})["lock"].(map[string]any)["lock"].(string)
	e.must(200, "GET", Prefix+"/locks/acquire/"+a, nil)
	e.must(200, "POST", rows, map[string]any{"values": map[string]any{"k": "x", "v": 1}, "consistencyInfo": map[string]string{"type": "critical", "lockId": a}})
	b := e.lockRef(name) // succeeds once a's lease expires and a is released by force
	e.must(400, "POST", rows, map[string]any{"values": map[string]any{"k": "x", "v": 2}, "consistencyInfo": map[string]string{"type": "critical", "lockId": a}})
	out := e.must(200, "PUT", rows+"/criticalget?k=x", map[string]any{"consistencyInfo": map[string]string{"type": "critical", "lockId": b}})
	if fmt.Sprint(out["result"].(map[string]any)["row 0"].(map[string]any)["v"]) != "1" {
		t.Fatalf("after repair: %v", out)
	}
	if _, err := e.locks.Check(t.Context(), b); err != nil {
		t.Fatal(err)
	}
}
