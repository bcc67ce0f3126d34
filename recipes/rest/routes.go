package rest

import "net/http"

type route struct {
	pattern, name string
	public        bool
	h             handler
}

func (a *API) routes() {
	for _, r := range a.routeTable() {
		a.handle(r.pattern, r.name, r.public, r.h)
	}
	a.handle(Prefix+"/", "unknown", true, func(w http.ResponseWriter, r *http.Request, _ caller) {
		failure(w, http.StatusNotFound, "no such API path: "+r.Method+" "+r.URL.Path)
	})
}

// routeTable is every endpoint: method and path pattern, metrics name, whether it
// needs no authentication, handler.
func (a *API) routeTable() []route {
	ks := Prefix + "/keyspaces/{keyspace}"
	tb := ks + "/tables/{table}"
	lk := Prefix + "/locks"
	cd := Prefix + "/conditional"
	pq := Prefix + "/priorityq/keyspaces/{keyspace}/{table}"
	return []route{
		{"POST " + ks, "keyspace_create", false, a.createKeyspace},
		{"DELETE " + ks, "keyspace_drop", false, a.dropKeyspace},
		{"POST " + tb, "table_create", false, a.createTable},
		{"DELETE " + tb, "table_drop", false, a.dropTable},
		{"POST " + tb + "/index/{field}", "index_create", false, a.createIndex},
		{"POST " + tb + "/rows", "row_insert", false, a.insertRow},
		{"PUT " + tb + "/rows", "row_update", false, a.updateRow},
		{"DELETE " + tb + "/rows", "row_delete", false, a.deleteRow},
		{"GET " + tb + "/rows", "row_select", false, a.selectRows},
		{"PUT " + tb + "/rows/criticalget", "row_criticalget", false, a.criticalGet},
		{"POST " + cd + "/insert/keyspaces/{keyspace}/tables/{table}", "conditional_insert", false, a.insertConditional},
		{"PUT " + cd + "/update/keyspaces/{keyspace}/tables/{table}", "conditional_update", false, a.updateConditional},
		{"POST " + pq, "queue_create", false, a.createQueue},
		{"DELETE " + pq, "queue_drop", false, a.dropTable},
		{"POST " + pq + "/rows", "queue_insert", false, a.insertQueue},
		{"PUT " + pq + "/rows", "queue_update", false, a.updateQueue},
		{"DELETE " + pq + "/rows", "queue_delete", false, a.deleteQueue},
		{"GET " + pq + "/peek", "queue_peek", false, a.peekQueue},
		{"GET " + pq + "/filter", "queue_filter", false, a.filterQueue},
		{"POST " + lk + "/create/{name}", "lock_create", false, a.createLock},
		{"GET " + lk + "/acquire/{ref}", "lock_acquire", false, a.acquireLock},
		{"POST " + lk + "/acquire-with-lease/{ref}", "lock_acquire_lease", false, a.acquireWithLease},
		{"GET " + lk + "/enquire/{name}", "lock_enquire", false, a.enquireLock},
		{"GET " + lk + "/holders/{name}", "lock_holders", false, a.lockHolders},
		{"GET " + lk + "/{name}", "lock_state", false, a.enquireLock},
		{"DELETE " + lk + "/release/{ref}", "lock_release", false, a.releaseLock},
		{"DELETE " + lk + "/delete/{name}", "lock_delete", false, a.deleteLock},
		{"POST " + lk + "/promote/{name}", "lock_promote", false, a.promoteLock},
		{"GET " + Prefix + "/version", "version", true, a.version},
		{"GET " + Prefix + "/version/build", "version_build", true, a.build},
		{"GET " + Prefix + "/service/pingCassandra/{consistency}", "ping_cassandra_at", true, a.pingCassandraAt},
		{"GET " + Prefix + "/service/pingCassandra", "ping_cassandra", true, a.pingCassandra},
		{"GET " + Prefix + "/service/pingZookeeper", "ping_zookeeper", true, a.pingZookeeper},
		{"GET " + Prefix + "/service/musicHealthCheck", "health", true, a.healthCheck},
		{"GET " + Prefix + "/openapi.yaml", "openapi", true, serveOpenAPI},
	}
}

func serveOpenAPI(w http.ResponseWriter, _ *http.Request, _ caller) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}
