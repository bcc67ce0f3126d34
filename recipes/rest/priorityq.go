package rest

import (
	"net/http"
	"strings"

	"github.com/music-coord/music/recipes/store"
)

// ONAP's priority queue API (/priorityq): a queue is a table whose clustering order is
// the priority; consumers peek at a partition's first row and delete it. The endpoints
// check what ONAP checks and then act as the table endpoints do.

// createQueue is ONAP's createQ: a table that must have a partition key, a clustering
// key and a clustering order.
func (a *API) createQueue(w http.ResponseWriter, r *http.Request, c caller) {
	if !a.allowed(w, c, r.PathValue("keyspace")) {
		return
	}
	var body jsonTable
	if err := decode(r.Body, &body, true); err != nil {
		fail(w, err)
		return
	}
	if err := checkQueueTable(body); err != nil {
		fail(w, err)
		return
	}
	a.doCreateTable(w, r, body)
}

func checkQueueTable(b jsonTable) error {
	if len(b.Fields) == 0 {
		return badRequest("CreateQ/Required table fields are empty or not set")
	}
	pk := b.PrimaryKey
	if v, ok := b.Fields["PRIMARY KEY"]; ok && pk == "" {
		pk = v
	}
	part, clus := strings.Split(b.PartitionKey, ","), strings.Split(b.ClusteringKey, ",")
	if b.PartitionKey == "" {
		if pk == "" {
			return badRequest("CreateQ: Partition key cannot be empty")
		}
		p, c, err := primaryKey(pk)
		if err != nil {
			return err
		}
		part, clus = p, c
	}
	switch {
	case b.ClusteringOrder == "":
		return badRequest("CreateQ: Clustering Order cannot be empty")
	case len(part) == 0 || strings.TrimSpace(part[0]) == "":
		return badRequest("CreateQ: Partition key cannot be empty")
	case len(clus) == 0 || strings.TrimSpace(clus[0]) == "":
		return badRequest("CreateQ: Clustering key cannot be empty")
	case b.FilteringKey != "" && strings.EqualFold(b.FilteringKey, b.PartitionKey):
		return badRequest("CreateQ: Filtering key cannot be same as Partition Key")
	}
	return nil
}

func (a *API) insertQueue(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, false, needValues("Required HTTP Request body is missing."), a.store.Insert, "Insert Successful")
}

func (a *API) updateQueue(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, true, needValues("Required HTTP Request body is missing. JsonUpdate updateObj.getValues() is empty. "), a.store.Update, "")
}

func (a *API) deleteQueue(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, true, nil, a.store.Delete, "")
}

func needValues(msg string) func(store.Write) error {
	return func(w store.Write) error {
		if len(w.Values) == 0 {
			return badRequest("%s", msg)
		}
		return nil
	}
}

// peekQueue is ONAP's peek: the first row of the rows the query names (all when none).
func (a *API) peekQueue(w http.ResponseWriter, r *http.Request, c caller) {
	ks, tb := r.PathValue("keyspace"), r.PathValue("table")
	if !a.allowed(w, c, ks) {
		return
	}
	key, err := rowKey(r.URL.Query())
	if err != nil {
		fail(w, err)
		return
	}
	out := &rowStream{w: w, quiet: true}
	out.finish(a.store.SelectEach(r.Context(), store.Query{Keyspace: ks, Table: tb, Key: key, Limit: 1}, out.add), true)
}

// filterQueue is ONAP's filter: an eventual select.
func (a *API) filterQueue(w http.ResponseWriter, r *http.Request, c caller) {
	a.doSelect(w, r, c, jsonRow{}, false)
}
