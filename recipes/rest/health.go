package rest

import (
	"context"
	"net/http"
	"time"
)

func (a *API) version(w http.ResponseWriter, _ *http.Request, _ caller) {
	success(w, obj{"version": "MUSIC:" + LatestVersion})
}

func (a *API) pingCassandra(w http.ResponseWriter, r *http.Request, _ caller) {
	a.ping(w, r, "CASSANDRA", a.store.Ping)
}

func (a *API) pingZookeeper(w http.ResponseWriter, r *http.Request, _ caller) {
	a.ping(w, r, "ZOOKEEPER", a.locks.Ping)
}

func (a *API) ping(w http.ResponseWriter, r *http.Request, what string, f func(context.Context) error) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := f(ctx); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, obj{"status": "FAILURE", what: "Inactive", "error": err.Error()})
		return
	}
	success(w, obj{what: "Active"})
}

// Health checks Cassandra and ZooKeeper; the server's /healthz uses it.
func (a *API) Health(ctx context.Context) error {
	if err := a.store.Ping(ctx); err != nil {
		return err
	}
	return a.locks.Ping(ctx)
}

func (a *API) healthCheck(w http.ResponseWriter, r *http.Request, _ caller) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	body, code := obj{"status": "SUCCESS", "CASSANDRA": "Active", "ZOOKEEPER": "Active"}, http.StatusOK
	if err := a.store.Ping(ctx); err != nil {
		body["CASSANDRA"], body["status"], code = "Inactive", "FAILURE", http.StatusServiceUnavailable
	}
	if err := a.locks.Ping(ctx); err != nil {
		body["ZOOKEEPER"], body["status"], code = "Inactive", "FAILURE", http.StatusServiceUnavailable
	}
	writeJSON(w, code, body)
}
