package rest

import (
	"net/http"
	"strings"

	"github.com/music-coord/music/recipes/store"
)

func (a *API) createKeyspace(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("keyspace")
	if !a.allowed(w, c, name) {
		return
	}
	var body jsonKeySpace
	if err := decode(r.Body, &body, true); err != nil {
		fail(w, err)
		return
	}
	if body.ReplicationInfo == nil {
		failure(w, http.StatusBadRequest, "replicationInfo is missing")
		return
	}
	durable, err := boolField("durabilityOfWrites", body.DurabilityOfWrites)
	if err == nil {
		err = a.store.CreateKeyspace(r.Context(), store.KeyspaceSpec{Name: name, Replication: body.ReplicationInfo, DurableWrites: durable})
	}
	if err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"message": "Keyspace " + name + " Created"})
}

func (a *API) dropKeyspace(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("keyspace")
	if !a.allowed(w, c, name) {
		return
	}
	if err := a.store.DropKeyspace(r.Context(), name); err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"message": "Keyspace " + name + " Deleted"})
}

func (a *API) createTable(w http.ResponseWriter, r *http.Request, c caller) {
	if !a.allowed(w, c, r.PathValue("keyspace")) {
		return
	}
	var body jsonTable
	if err := decode(r.Body, &body, true); err != nil {
		fail(w, err)
		return
	}
	a.doCreateTable(w, r, body)
}

func (a *API) doCreateTable(w http.ResponseWriter, r *http.Request, body jsonTable) {
	ks, tb := r.PathValue("keyspace"), r.PathValue("table")
	spec, err := tableSpec(ks, tb, body)
	if err == nil {
		err = a.store.CreateTable(r.Context(), spec)
	}
	if err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"message": "TableName " + tb + " Created under keyspace " + ks})
}

// tableSpec turns ONAP's JsonTable into a TableSpec. As ONAP: "PRIMARY KEY" among the
// fields replaces primaryKey; partitionKey, when given, wins over both, with
// clusteringKey and then filteringKey as the clustering columns.
func tableSpec(ks, tb string, body jsonTable) (store.TableSpec, error) {
	spec := store.TableSpec{Keyspace: ks, Name: tb, Columns: map[string]string{}, Properties: body.Properties}
	pk := body.PrimaryKey
	for name, typ := range body.Fields {
		if strings.EqualFold(strings.TrimSpace(name), "PRIMARY KEY") {
			pk = typ
			continue
		}
		spec.Columns[strings.ToLower(name)] = typ
	}
	part := body.PartitionKey
	if part == "" {
		part = body.PartitionColumns
	}
	var err error
	if part != "" {
		spec.PartitionKey = splitList(strings.Trim(part, "() "))
		spec.ClusteringKey = append(splitList(body.ClusteringKey), splitList(body.FilteringKey)...)
	} else if spec.PartitionKey, spec.ClusteringKey, err = primaryKey(pk); err != nil {
		return spec, err
	}
	lower(spec.PartitionKey)
	lower(spec.ClusteringKey)
	if body.ClusteringOrder != "" {
		spec.ClusteringOrder = map[string]string{}
		for _, part := range splitList(body.ClusteringOrder) {
			col, dir, _ := strings.Cut(part, " ")
			spec.ClusteringOrder[strings.ToLower(col)] = strings.TrimSpace(dir)
		}
	}
	return spec, nil
}

func lower(s []string) {
	for i := range s {
		s[i] = strings.ToLower(s[i])
	}
}

func (a *API) dropTable(w http.ResponseWriter, r *http.Request, c caller) {
	ks, tb := r.PathValue("keyspace"), r.PathValue("table")
	if !a.allowed(w, c, ks) {
		return
	}
	if err := a.store.DropTable(r.Context(), ks, tb); err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"message": "Table " + ks + "." + tb + " Deleted"})
}

func (a *API) createIndex(w http.ResponseWriter, r *http.Request, c caller) {
	ks, tb, field := r.PathValue("keyspace"), r.PathValue("table"), r.PathValue("field")
	if !a.allowed(w, c, ks) {
		return
	}
	if err := a.store.CreateIndex(r.Context(), ks, tb, field, r.URL.Query().Get("index_name")); err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"message": "Index Created on " + ks + "." + tb + "." + field})
}
