package rest

import (
	"context"
	"net/http"
	"time"

	"github.com/music-coord/music/recipes/store"
)

// ONAP's pingCassandra answers.
const (
	cassActive   = "Cassandra Running and Listening to requests"
	cassInactive = "One or more nodes in the Cluster is/are down or not responding."
	cassInvalid  = "Consistency level is invalid..."
)

func (a *API) version(w http.ResponseWriter, _ *http.Request, _ caller) {
	success(w, obj{"version": "MUSIC:" + a.cfg.Version})
}

func (a *API) build(w http.ResponseWriter, _ *http.Request, _ caller) {
	success(w, obj{"version": "MUSIC:" + a.cfg.Version, "build": "MUSIC:" + a.cfg.Build})
}

// pingCassandraAt is ONAP's /service/pingCassandra/{consistency}: 200 ACTIVE when
// Cassandra serves a read at that level, 400 INACTIVE when not, 400 INVALID for a name
// that is not a level.
func (a *API) pingCassandraAt(w http.ResponseWriter, r *http.Request, _ caller) {
	level := r.PathValue("consistency")
	if !store.ValidConsistency(level) {
		writeJSON(w, http.StatusBadRequest, obj{"status": "INVALID", "message": cassInvalid, "INVALID": "INVALID"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	if err := a.store.PingAt(ctx, level); err != nil {
		writeJSON(w, http.StatusBadRequest, obj{"status": "INACTIVE", "message": cassInactive, "INACTIVE": cassInactive})
		return
	}
	writeJSON(w, http.StatusOK, obj{"status": "ACTIVE", "message": cassActive, "ACTIVE": cassActive})
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

// healthCheck is ONAP's musicHealthCheck: always 200 with exactly the keys Cassandra and
// MUSIC. Cassandra is Active when it takes a read at ONE. MUSIC is Active unless
// ZooKeeper, which this MUSIC's locks need (ONAP's last release kept locks in
// Cassandra), does not answer.
func (a *API) healthCheck(w http.ResponseWriter, r *http.Request, _ caller) {
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	body := obj{"Cassandra": "Active", "MUSIC": "Active"}
	if err := a.store.PingAt(ctx, "ONE"); err != nil {
		body["Cassandra"] = "Inactive"
	}
	if err := a.locks.Ping(ctx); err != nil {
		body["MUSIC"] = "Inactive"
	}
	writeJSON(w, http.StatusOK, body)
}
