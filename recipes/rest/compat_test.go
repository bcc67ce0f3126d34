package rest

import (
	"fmt"
	"strings"
	"testing"
)

// compatCase is one answer of ONAP MUSIC's v2 API as its sources (onap/archive-music,
// music-rest and music-core, last release) give it: the status code, the fields whose
// values ONAP fixes, and the fields it always sends. Cases run in order on shared state.
type compatCase struct {
	name         string // ONAP's resource method
	method, path string
	body         any
	hdr          []string
	code         int
	want         map[string]any // field -> exact value ("lock.lock" reaches into "lock")
	has          []string       // fields present
}

func TestONAPCompat(t *testing.T) {
	e := newEnv(t)
	ks, P := e.ks, Prefix
	tb := P + "/keyspaces/" + ks + "/tables/emp"
	rows := tb + "/rows"
	lk := P + "/locks"
	name := ks + ".emp.tom"
	ev := map[string]string{"type": "eventual"}
	repl := map[string]any{"class": "SimpleStrategy", "replication_factor": 1}
	newKS := "t_" + strings.TrimPrefix(ks, "t_") + "x"
	var ref, ref2 string
	refp := func() string { return ref }
	cases := []compatCase{
		// RestMusicDataAPI
		{name: "createKeySpace", method: "POST", path: P + "/keyspaces/" + newKS, body: map[string]any{"replicationInfo": repl, "durabilityOfWrites": true, "consistencyInfo": ev},
			code: 200, want: map[string]any{"status": "SUCCESS", "message": "Keyspace " + newKS + " Created"}},
		{name: "createKeySpace without body", method: "POST", path: P + "/keyspaces/" + newKS, code: 400,
			want: map[string]any{"status": "FAILURE", "error": errBodyMissing}},
		{name: "createKeySpace without replicationInfo", method: "POST", path: P + "/keyspaces/" + newKS, body: map[string]any{"consistencyInfo": ev}, code: 400,
			want: map[string]any{"status": "FAILURE"}},
		{name: "dropKeySpace", method: "DELETE", path: P + "/keyspaces/" + newKS, code: 200,
			want: map[string]any{"status": "SUCCESS", "message": "Keyspace " + newKS + " Deleted"}},
		{name: "createTable", method: "POST", path: tb, body: map[string]any{"fields": map[string]string{"name": "text", "salary": "varint", "dept": "text", "info": "text", "PRIMARY KEY": "(name)"}, "consistencyInfo": ev},
			code: 200, want: map[string]any{"status": "SUCCESS", "message": "TableName emp Created under keyspace " + ks}},
		{name: "createTable without body", method: "POST", path: tb, code: 400, want: map[string]any{"error": errBodyMissing}},
		{name: "createTable with unbalanced primary key", method: "POST", path: P + "/keyspaces/" + ks + "/tables/t2", body: map[string]any{"fields": map[string]string{"a": "text", "PRIMARY KEY": "((a)"}}, code: 400},
		{name: "createIndex", method: "POST", path: tb + "/index/dept", code: 200, want: map[string]any{"status": "SUCCESS", "message": "Index Created on " + ks + ".emp.dept"}},
		{name: "createIndex on an unknown column", method: "POST", path: tb + "/index/nope", code: 400, want: map[string]any{"status": "FAILURE"}},
		{name: "insertIntoTable", method: "POST", path: rows, body: map[string]any{"values": map[string]any{"name": "tom", "salary": 10, "dept": "ops", "info": map[string]any{}}, "consistencyInfo": ev},
			code: 200, want: map[string]any{"status": "SUCCESS", "message": "Insert Successful"}},
		{name: "insertIntoTable without body", method: "POST", path: rows, code: 400, want: map[string]any{"error": errBodyMissing}},
		{name: "insertIntoTable into an unknown table", method: "POST", path: tb + "x/rows", body: map[string]any{"values": map[string]any{"a": 1}, "consistencyInfo": ev}, code: 400},
		{name: "insertIntoTable with an unknown column", method: "POST", path: rows, body: map[string]any{"values": map[string]any{"name": "x", "nope": 1}, "consistencyInfo": ev}, code: 400},
		{name: "insertIntoTable critical without lockId", method: "POST", path: rows, body: map[string]any{"values": map[string]any{"name": "tom"}, "consistencyInfo": map[string]string{"type": "critical"}},
			code: 400, want: map[string]any{"error": errNoLock}},
		{name: "insertIntoTable with a bad consistency", method: "POST", path: rows, body: map[string]any{"values": map[string]any{"name": "x"}, "consistencyInfo": map[string]string{"type": "eventual", "consistency": "MOST"}}, code: 400},
		{name: "updateTable eventual", method: "PUT", path: rows + "?name=tom", body: map[string]any{"values": map[string]any{"salary": 20}, "conditions": map[string]any{"salary": 999}, "consistencyInfo": ev},
			code: 200, want: map[string]any{"status": "SUCCESS", "message": "Eventual Operation Successfully performed"}},
		{name: "updateTable without body", method: "PUT", path: rows + "?name=tom", code: 400, want: map[string]any{"error": errBodyMissing}},
		{name: "select", method: "GET", path: rows + "?name=tom", code: 200, want: map[string]any{"status": "SUCCESS", "result.row 0.salary": 20.0, "result.row 0.info": "{}"}},
		{name: "select by secondary index", method: "GET", path: rows + "?dept=ops", code: 200, has: []string{"result.row 0"}},
		{name: "select of no row", method: "GET", path: rows + "?name=nobody", code: 200, want: map[string]any{"status": "SUCCESS", "error": "No data found"}, has: []string{"result"}},
		{name: "select with an unknown column", method: "GET", path: rows + "?nope=1", code: 400, want: map[string]any{"status": "FAILURE"}},
		{name: "selectCritical without row key", method: "PUT", path: rows + "/criticalget", body: map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}}, code: 400, want: map[string]any{"error": errNoKey}},
		{name: "selectCritical without body", method: "PUT", path: rows + "/criticalget?name=tom", code: 400},
		{name: "selectCritical atomic", method: "PUT", path: rows + "/criticalget?name=tom", body: map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}}, code: 200, want: map[string]any{"result.row 0.name": "tom"}},
		{name: "selectWithCritical (minor 1, patch 0)", method: "GET", path: rows + "?name=tom", body: map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}}, hdr: []string{"X-minorVersion", "1", "X-patchVersion", "0"},
			code: 200, want: map[string]any{"result.row 0.name": "tom"}},
		// RestMusicLocksAPI
		{name: "createLockReference with a bad name", method: "POST", path: lk + "/create/nodots", code: 400, want: map[string]any{"status": "FAILURE"}},
		{name: "createLockReference", method: "POST", path: lk + "/create/" + name, body: map[string]any{"locktype": "WRITE"}, code: 200, want: map[string]any{"status": "SUCCESS"}, has: []string{"lock.lock"}},
		{name: "createLockReference (second)", method: "POST", path: lk + "/create/" + name, code: 200, has: []string{"lock.lock"}},
		{name: "accquireLock", method: "GET", path: lk + "/acquire/{ref}", code: 200, want: map[string]any{"status": "SUCCESS", "lock.lock": "{ref}"}, has: []string{"message"}},
		{name: "accquireLock not first", method: "GET", path: lk + "/acquire/{ref2}", code: 400, want: map[string]any{"status": "FAILURE", "lock.lock": "{ref2}"}},
		{name: "accquireLockWithLease", method: "POST", path: lk + "/acquire-with-lease/{ref}", body: map[string]any{"leasePeriod": 60000}, code: 200, want: map[string]any{"status": "SUCCESS", "lock.lock-lease": "60000"}},
		{name: "enquireLock", method: "GET", path: lk + "/enquire/" + name, code: 200, want: map[string]any{"status": "SUCCESS", "lock.lock": name, "lock.lock-holder": "{ref}"}},
		{name: "currentLockHolder", method: "GET", path: lk + "/holders/" + name, code: 200, want: map[string]any{"status": "SUCCESS", "lock.lock": name, "lock.lock-holder": []any{"{ref}"}}},
		{name: "currentLockState", method: "GET", path: lk + "/" + name, code: 200, want: map[string]any{"lock.lock-holder": "{ref}"}},
		{name: "updateTable critical", method: "PUT", path: rows + "?name=tom", body: map[string]any{"values": map[string]any{"salary": 30}, "conditions": map[string]any{"salary": 20}, "consistencyInfo": map[string]string{"type": "critical", "lockId": "{ref}"}},
			code: 200, want: map[string]any{"message": "Update performed"}},
		{name: "updateTable critical, conditions false", method: "PUT", path: rows + "?name=tom", body: map[string]any{"values": map[string]any{"salary": 40}, "conditions": map[string]any{"salary": 1}, "consistencyInfo": map[string]string{"type": "critical", "lockId": "{ref}"}}, code: 400},
		{name: "updateTable critical, not the holder", method: "PUT", path: rows + "?name=tom", body: map[string]any{"values": map[string]any{"salary": 40}, "consistencyInfo": map[string]string{"type": "critical", "lockId": "{ref2}"}}, code: 400},
		{name: "selectCritical", method: "PUT", path: rows + "/criticalget?name=tom", body: map[string]any{"consistencyInfo": map[string]string{"type": "critical", "lockId": "{ref}"}}, code: 200, want: map[string]any{"result.row 0.salary": 30.0}},
		{name: "promoteLock of a write reference", method: "POST", path: lk + "/promote/{ref}", code: 400, want: map[string]any{"status": "FAILURE"}},
		{name: "unLock", method: "DELETE", path: lk + "/release/{ref}", code: 200, want: map[string]any{"status": "SUCCESS", "lock.lock": "{ref}", "lock.lock-status": "UNLOCKED"}},
		{name: "unLock with a bad reference", method: "DELETE", path: lk + "/release/nodots", code: 400},
		{name: "deleteLock of a name", method: "DELETE", path: lk + "/delete/" + name, code: 400},
		{name: "deleteLock", method: "DELETE", path: lk + "/delete/{ref2}", code: 200, want: map[string]any{"status": "SUCCESS"}},
		{name: "enquireLock of no holder", method: "GET", path: lk + "/enquire/" + name, code: 400, want: map[string]any{"status": "FAILURE"}},
		{name: "deleteFromTable atomic", method: "DELETE", path: rows + "?name=tom", body: map[string]any{"consistencyInfo": map[string]string{"type": "atomic"}}, code: 200, want: map[string]any{"message": "Update performed"}},
		{name: "deleteFromTable without key", method: "DELETE", path: rows, body: map[string]any{"consistencyInfo": ev}, code: 400},
		// RestMusicConditionalAPI
		{name: "insertConditional", method: "POST", path: P + "/conditional/insert/keyspaces/" + ks + "/tables/orders", body: map[string]any{"primaryKey": "id", "primaryKeyValue": "o1", "casscadeColumnName": "plans",
			"tableValues": map[string]any{"id": "o1"}, "casscadeColumnData": map[string]any{"key": "p1", "value": map[string]any{"a": "b"}},
			"conditions": map[string]any{"exists": map[string]string{"status": "parked"}, "nonexists": map[string]string{"status": "new"}}},
			code: 200, want: map[string]any{"status": "SUCCESS", "message": "Insert values: "}},
		{name: "insertConditional missing input", method: "POST", path: P + "/conditional/insert/keyspaces/" + ks + "/tables/orders", body: map[string]any{"primaryKey": "id"}, code: 400},
		{name: "updateConditional", method: "PUT", path: P + "/conditional/update/keyspaces/" + ks + "/tables/orders", body: map[string]any{"primaryKey": "id", "primaryKeyValue": "o1", "casscadeColumnName": "plans",
			"casscadeColumnData": map[string]any{"key": "p1", "value": map[string]any{"status": "done"}}}, code: 200, want: map[string]any{"status": "SUCCESS", "message": "update success"}},
		{name: "updateConditional of no row", method: "PUT", path: P + "/conditional/update/keyspaces/" + ks + "/tables/orders", body: map[string]any{"primaryKey": "id", "primaryKeyValue": "o9", "casscadeColumnName": "plans",
			"casscadeColumnData": map[string]any{"key": "p1", "value": map[string]any{"status": "done"}}}, code: 400, want: map[string]any{"status": "FAILURE"}},
		// RestMusicQAPI
		{name: "createQ without clustering order", method: "POST", path: P + "/priorityq/keyspaces/" + ks + "/q", body: map[string]any{"fields": map[string]string{"k": "text", "p": "int"}, "primaryKey": "(k), p"},
			code: 400, want: map[string]any{"error": "CreateQ: Clustering Order cannot be empty"}},
		{name: "createQ without fields", method: "POST", path: P + "/priorityq/keyspaces/" + ks + "/q", body: map[string]any{"primaryKey": "k"}, code: 400, want: map[string]any{"error": "CreateQ/Required table fields are empty or not set"}},
		{name: "createQ", method: "POST", path: P + "/priorityq/keyspaces/" + ks + "/q", body: map[string]any{"fields": map[string]string{"k": "text", "p": "int", "v": "text"}, "primaryKey": "(k), p", "clusteringOrder": "p ASC"}, code: 200},
		{name: "insertIntoQ", method: "POST", path: P + "/priorityq/keyspaces/" + ks + "/q/rows", body: map[string]any{"values": map[string]any{"k": "a", "p": 1, "v": "x"}, "consistencyInfo": ev}, code: 200, want: map[string]any{"message": "Insert Successful"}},
		{name: "insertIntoQ without values", method: "POST", path: P + "/priorityq/keyspaces/" + ks + "/q/rows", body: map[string]any{"values": map[string]any{}, "consistencyInfo": ev}, code: 400, want: map[string]any{"error": "Required HTTP Request body is missing."}},
		{name: "updateQ", method: "PUT", path: P + "/priorityq/keyspaces/" + ks + "/q/rows?k=a&p=1", body: map[string]any{"values": map[string]any{"v": "y"}, "consistencyInfo": ev}, code: 200},
		{name: "peek", method: "GET", path: P + "/priorityq/keyspaces/" + ks + "/q/peek?k=a", code: 200, want: map[string]any{"result.row 0.v": "y"}},
		{name: "filter", method: "GET", path: P + "/priorityq/keyspaces/" + ks + "/q/filter?k=a", code: 200, has: []string{"result.row 0"}},
		{name: "deleteFromQ", method: "DELETE", path: P + "/priorityq/keyspaces/" + ks + "/q/rows?k=a&p=1", body: map[string]any{"consistencyInfo": ev}, code: 200},
		{name: "dropQ", method: "DELETE", path: P + "/priorityq/keyspaces/" + ks + "/q", code: 200, want: map[string]any{"status": "SUCCESS"}},
		{name: "dropTable", method: "DELETE", path: tb, code: 200, want: map[string]any{"status": "SUCCESS"}},
		{name: "dropTable of an unknown table", method: "DELETE", path: tb, code: 400, want: map[string]any{"status": "FAILURE"}},
		// RestMusicHealthCheckAPI, RestMusicVersionAPI
		{name: "musicHealthCheck", method: "GET", path: P + "/service/musicHealthCheck", code: 200, want: map[string]any{"Cassandra": "Active", "MUSIC": "Active"}},
		{name: "cassandraStatus", method: "GET", path: P + "/service/pingCassandra/ONE", code: 200, want: map[string]any{"status": "ACTIVE", "ACTIVE": cassActive}},
		{name: "cassandraStatus of a bad level", method: "GET", path: P + "/service/pingCassandra/SOME", code: 400, want: map[string]any{"status": "INVALID"}},
		{name: "version", method: "GET", path: P + "/version", code: 200, want: map[string]any{"status": "SUCCESS", "version": "MUSIC:" + DefaultVersion}},
		{name: "build", method: "GET", path: P + "/version/build", code: 200, has: []string{"build", "version"}},
	}
	e.must(200, "POST", P+"/keyspaces/"+ks+"/tables/orders", map[string]any{"fields": map[string]string{"id": "text", "plans": "map<text,text>", "PRIMARY KEY": "(id)"}})
	for _, tc := range cases {
		sub := func(s string) string { return strings.NewReplacer("{ref}", refp(), "{ref2}", ref2).Replace(s) }
		code, out := e.call(tc.method, sub(tc.path), subBody(tc.body, sub), tc.hdr...)
		if code != tc.code {
			t.Errorf("%s: %s %s = %d %v, want %d", tc.name, tc.method, tc.path, code, out, tc.code)
			continue
		}
		for f, want := range tc.want {
			if s, ok := want.(string); ok {
				want = sub(s)
			}
			if l, ok := want.([]any); ok {
				want = []any{sub(l[0].(string))}
			}
			if got := field(out, f); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("%s: %s = %v, want %v (body %v)", tc.name, f, got, want, out)
			}
		}
		for _, f := range tc.has {
			if field(out, f) == nil {
				t.Errorf("%s: no %s in %v", tc.name, f, out)
			}
		}
		if tc.name == "createLockReference" {
			ref = field(out, "lock.lock").(string)
		}
		if tc.name == "createLockReference (second)" {
			ref2 = field(out, "lock.lock").(string)
		}
	}
}

// subBody replaces {ref} placeholders in a body's lockId.
func subBody(b any, sub func(string) string) any {
	m, ok := b.(map[string]any)
	if !ok {
		return b
	}
	if ci, ok := m["consistencyInfo"].(map[string]string); ok && ci["lockId"] != "" {
		c := map[string]string{}
		for k, v := range ci {
			c[k] = sub(v)
		}
		m["consistencyInfo"] = c
	}
	return m
}

// field reads a dotted path ("lock.lock", "result.row 0.name") of a decoded body.
func field(m map[string]any, path string) any {
	var cur any = m
	for _, p := range strings.Split(path, ".") {
		mm, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = mm[p]
	}
	return cur
}
