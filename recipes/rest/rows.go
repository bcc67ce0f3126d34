package rest

import (
	"net/http"
	"strings"

	"github.com/music-coord/music/recipes/store"
)

// rowWrite decodes a row request into a store.Write.
func rowWrite(r *http.Request, needKey bool) (store.Write, error) {
	w := store.Write{Keyspace: r.PathValue("keyspace"), Table: r.PathValue("table")}
	var body jsonRow
	if err := decode(r.Body, &body, !needKey); err != nil {
		return w, err
	}
	ttl, err := intField("ttl", body.TTL)
	if err != nil {
		return w, err
	}
	w.Values, w.Conditions, w.TTL = jsonValues(body.Values), jsonValues(body.Conditions), int(ttl)
	w.Mode, w.LockRef = consistencyInfo(body.ConsistencyInfo)
	if needKey {
		if w.Key, err = rowKey(r.URL.Query()); err != nil {
			return w, err
		}
		if len(w.Key) == 0 {
			return w, badRequest("missing row identifier: give the row's key as ?column=value")
		}
	}
	if len(body.Columns) > 0 {
		return w, badRequest("deleting single columns is not supported; delete the row")
	}
	return w, nil
}

func consistencyInfo(ci map[string]string) (store.Mode, string) {
	return store.Mode(strings.ToLower(ci["type"])), ci["lockId"]
}

func (a *API) writeRow(w http.ResponseWriter, r *http.Request, c caller, needKey bool,
	op func(*store.Store, *http.Request, store.Write) error, msg string) {
	if !a.allowed(w, c, r.PathValue("keyspace")) {
		return
	}
	req, err := rowWrite(r, needKey)
	if err == nil {
		err = op(a.store, r, req)
	}
	if err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"message": msg})
}

func (a *API) insertRow(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, false, func(s *store.Store, r *http.Request, q store.Write) error {
		return s.Insert(r.Context(), q)
	}, "Insert Successful")
}

func (a *API) updateRow(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, true, func(s *store.Store, r *http.Request, q store.Write) error {
		return s.Update(r.Context(), q)
	}, "Update Successful")
}

func (a *API) deleteRow(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, true, func(s *store.Store, r *http.Request, q store.Write) error {
		return s.Delete(r.Context(), q)
	}, "Delete Successful")
}

// selectRows is an eventual select, or a critical one when the client asks for minor
// version 1, patch 0 and sends consistencyInfo, as ONAP's v2 select does.
func (a *API) selectRows(w http.ResponseWriter, r *http.Request, c caller) {
	critical := r.Header.Get("X-minorVersion") == "1" && r.Header.Get("X-patchVersion") == "0"
	a.doSelect(w, r, c, critical)
}

func (a *API) criticalGet(w http.ResponseWriter, r *http.Request, c caller) {
	a.doSelect(w, r, c, true)
}

func (a *API) doSelect(w http.ResponseWriter, r *http.Request, c caller, critical bool) {
	ks, tb := r.PathValue("keyspace"), r.PathValue("table")
	if !a.allowed(w, c, ks) {
		return
	}
	key, err := rowKey(r.URL.Query())
	if err != nil {
		fail(w, err)
		return
	}
	q := store.Query{Keyspace: ks, Table: tb, Key: key}
	if critical {
		var body jsonRow
		if err := decode(r.Body, &body, true); err != nil {
			fail(w, err)
			return
		}
		if q.Mode, q.LockRef = consistencyInfo(body.ConsistencyInfo); q.Mode == "" || q.Mode == store.Eventual {
			failure(w, http.StatusBadRequest, "critical get needs consistencyInfo.type critical or atomic")
			return
		}
		if len(key) == 0 {
			failure(w, http.StatusBadRequest, "missing row identifier: give the row's key as ?column=value")
			return
		}
	}
	rows, err := a.store.Select(r.Context(), q)
	if err != nil {
		fail(w, err)
		return
	}
	body := obj{"result": rowsResult(rows)}
	if len(rows) == 0 {
		body["error"] = "No data found"
	}
	success(w, body)
}
