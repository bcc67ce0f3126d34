package rest

import (
	"context"
	"net/http"
	"strings"

	"go.uber.org/zap"

	"github.com/music-coord/music/recipes/store"
)

// rowWrite decodes a row request into a store.Write. As ONAP, eventual writes ignore
// conditions, and a critical write needs consistencyInfo.lockId.
func rowWrite(r *http.Request, needKey bool) (store.Write, error) {
	w := store.Write{Keyspace: r.PathValue("keyspace"), Table: r.PathValue("table")}
	var body jsonRow
	if err := decode(r.Body, &body, true); err != nil { // ONAP needs a body on every row write
		return w, err
	}
	ttl, err := intField("ttl", body.TTL)
	if err != nil {
		return w, err
	}
	if w.Timestamp, err = intField("timestamp", body.Timestamp); err != nil {
		return w, err
	}
	w.Values, w.Conditions, w.TTL, w.Columns = jsonValues(body.Values), jsonValues(body.Conditions), int(ttl), body.Columns
	w.Mode, w.LockRef = consistencyInfo(body.ConsistencyInfo)
	w.Consistency = body.ConsistencyInfo["consistency"]
	switch w.Mode {
	case store.Eventual, store.EventualNB, "":
		w.Conditions = nil
	case store.Critical:
		if w.LockRef == "" {
			return w, badRequest(errNoLock)
		}
	}
	if needKey {
		if w.Key, err = rowKey(r.URL.Query()); err != nil {
			return w, err
		}
		if len(w.Key) == 0 {
			return w, badRequest("missing row identifier: give the row's key as ?column=value")
		}
	}
	return w, nil
}

func consistencyInfo(ci map[string]string) (store.Mode, string) {
	return store.Mode(strings.ToLower(ci["type"])), ci["lockId"]
}

// writeRow decodes a row write, checks it with check (nil: no check) and runs op. The
// success message is ONAP's: insert's is fixed, update's and delete's say the mode.
func (a *API) writeRow(w http.ResponseWriter, r *http.Request, c caller, needKey bool, check func(store.Write) error,
	op func(context.Context, store.Write) error, insertMsg string) {
	if !a.allowed(w, c, r.PathValue("keyspace")) {
		return
	}
	req, err := rowWrite(r, needKey)
	if err == nil && check != nil {
		err = check(req)
	}
	if err == nil {
		err = op(r.Context(), req)
	}
	if err != nil {
		fail(w, err)
		return
	}
	msg := insertMsg
	if msg == "" {
		msg = "Update performed"
		if req.Mode == store.Eventual || req.Mode == store.EventualNB || req.Mode == "" {
			msg = "Eventual Operation Successfully performed"
		}
	}
	success(w, obj{"message": msg})
}

func (a *API) insertRow(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, false, nil, a.store.Insert, "Insert Successful")
}

func (a *API) updateRow(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, true, nil, a.store.Update, "")
}

func (a *API) deleteRow(w http.ResponseWriter, r *http.Request, c caller) {
	a.writeRow(w, r, c, true, nil, a.store.Delete, "")
}

// selectRows is an eventual select, or a critical one when the client asks for minor
// version 1, patch 0 and sends consistencyInfo, as ONAP's v2 select does.
func (a *API) selectRows(w http.ResponseWriter, r *http.Request, c caller) {
	var body jsonRow
	if r.Header.Get("X-minorVersion") == "1" && r.Header.Get("X-patchVersion") == "0" {
		if err := decode(r.Body, &body, false); err != nil {
			fail(w, err)
			return
		}
	}
	a.doSelect(w, r, c, body, len(body.ConsistencyInfo) > 0)
}

func (a *API) criticalGet(w http.ResponseWriter, r *http.Request, c caller) {
	var body jsonRow
	if err := decode(r.Body, &body, false); err != nil {
		fail(w, err)
		return
	}
	if len(body.ConsistencyInfo) == 0 {
		failure(w, http.StatusBadRequest, "Required HTTP Request body is missing. Missing Body or Consistency type.")
		return
	}
	a.doSelect(w, r, c, body, true)
}

const (
	errNoKey  = "Missing Row Identifier. Please provide the parameter of key=value for the row being selected."
	errNoLock = "LockId cannot be null. Create lock and acquire lock or use ATOMIC instead of CRITICAL"
)

// doSelect streams the rows. A critical select names one row and reads it under its lock
// (critical: the caller's lockId; atomic: a lock of its own); any other
// consistencyInfo.type falls back to an eventual select.
func (a *API) doSelect(w http.ResponseWriter, r *http.Request, c caller, body jsonRow, critical bool) {
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
		if len(key) == 0 {
			failure(w, http.StatusBadRequest, errNoKey)
			return
		}
		q.Mode, q.LockRef = consistencyInfo(body.ConsistencyInfo)
		switch {
		case q.Mode == store.Critical && q.LockRef == "":
			failure(w, http.StatusBadRequest, errNoLock)
			return
		case q.Mode != store.Critical && q.Mode != store.Atomic:
			q.Mode, critical = store.Eventual, false
		}
	}
	out := &rowStream{w: w}
	err = a.store.SelectEach(r.Context(), q, out.add)
	if err != nil && out.n > 0 {
		a.log.Warn("select failed after its first rows", zap.String("table", ks+"."+tb), zap.Int("rows", out.n), zap.Error(err))
	}
	out.finish(err, !critical)
}
