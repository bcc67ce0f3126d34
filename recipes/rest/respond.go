package rest

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"

	"gopkg.in/inf.v0"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/recipes/store"
)

// DefaultVersion is the API version reported in X-latestVersion and by /version unless
// Config.Version says otherwise.
const DefaultVersion = "2.0.0"

type obj = map[string]any

func writeJSON(w http.ResponseWriter, code int, body obj) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

func success(w http.ResponseWriter, body obj) {
	if body == nil {
		body = obj{}
	}
	body["status"] = "SUCCESS"
	writeJSON(w, http.StatusOK, body)
}

func failure(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, obj{"status": "FAILURE", "error": msg})
}

// fail writes err with the status its kind calls for.
func fail(w http.ResponseWriter, err error) { failure(w, statusOf(err), err.Error()) }

func statusOf(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest), errors.Is(err, store.ErrInvalid),
		errors.Is(err, lock.ErrBadName), errors.Is(err, lock.ErrBadRef):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConditionFailed),
		errors.Is(err, store.ErrLock), errors.Is(err, lock.ErrNotHolder),
		errors.Is(err, lock.ErrNotFound), errors.Is(err, lock.ErrTimeout), errors.Is(err, lock.ErrNoHolder):
		return http.StatusConflict
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// rowsResult is ONAP's select result: {"row 0": {...}, "row 1": {...}}.
func rowsResult(rows []map[string]any) obj {
	out := obj{}
	for i, r := range rows {
		for k, v := range r {
			switch x := v.(type) {
			case *inf.Dec:
				r[k] = x.String()
			case *big.Int:
				r[k] = json.Number(x.String())
			}
		}
		out["row "+itoa(i)] = r
	}
	return out
}
