package rest

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"

	"gopkg.in/inf.v0"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/recipes/cas"
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

// statusOf maps errors to codes as ONAP does: 400 for every failed request (bad input,
// unknown table or column, failed conditions, a lock not held or not obtained), 413 for
// a body too large, 503 when Cassandra or ZooKeeper cannot serve, 500 for the rest.
func statusOf(err error) int {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge
	case errors.Is(err, errBadRequest), errors.Is(err, store.ErrInvalid), errors.Is(err, store.ErrNotFound),
		errors.Is(err, store.ErrExists), errors.Is(err, store.ErrConditionFailed), errors.Is(err, store.ErrLock),
		errors.Is(err, lock.ErrBadName), errors.Is(err, lock.ErrBadRef), errors.Is(err, lock.ErrNotHolder),
		errors.Is(err, lock.ErrNotFound), errors.Is(err, lock.ErrTimeout), errors.Is(err, lock.ErrNoHolder),
		errors.Is(err, cas.ErrBusy), errors.Is(err, cas.ErrNoRow):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrUnavailable), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

// rowStream writes ONAP's select answer, {"result": {"row 0": {...}, "row 1": ...},
// "status": "SUCCESS"}, row by row as the rows are read, so a select has no row limit and
// no more than a page of rows in memory. A failure after the first row can no longer
// change the status code: the body then ends with "status": "FAILURE" and the error.
type rowStream struct {
	w     http.ResponseWriter
	buf   *bufio.Writer
	n     int
	quiet bool // no "No data found" when there is no row (ONAP's peek)
}

func (s *rowStream) add(row map[string]any) error {
	if s.n == 0 {
		s.w.Header().Set("Content-Type", "application/json")
		s.w.WriteHeader(http.StatusOK)
		s.buf = bufio.NewWriterSize(s.w, 32<<10)
		s.buf.WriteString(`{"result":{`)
	} else {
		s.buf.WriteByte(',')
	}
	raw, err := json.Marshal(rowJSON(row))
	if err != nil {
		return err
	}
	s.buf.WriteString(`"row ` + itoa(s.n) + `":`)
	s.n++
	_, err = s.buf.Write(raw)
	return err
}

// finish ends the answer. With no rows it answers "No data found", with an empty result
// when withResult (ONAP's eventual select has one, its critical select not).
func (s *rowStream) finish(err error, withResult bool) {
	if s.n == 0 {
		if err != nil {
			fail(s.w, err)
			return
		}
		body := obj{}
		if !s.quiet {
			body["error"] = "No data found"
		}
		if withResult {
			body["result"] = obj{}
		}
		success(s.w, body)
		return
	}
	tail := obj{"status": "SUCCESS"}
	if err != nil {
		tail = obj{"status": "FAILURE", "error": err.Error()}
	}
	raw, _ := json.Marshal(tail)
	s.buf.WriteString("},")
	s.buf.Write(raw[1:])
	s.buf.WriteByte('\n')
	_ = s.buf.Flush()
}

// rowJSON makes a row ready for JSON: vector_ts, ONAP's bookkeeping column, is dropped
// and decimals and varints print in full.
func rowJSON(r map[string]any) map[string]any {
	delete(r, "vector_ts")
	for k, v := range r {
		switch x := v.(type) {
		case *inf.Dec:
			r[k] = x.String()
		case *big.Int:
			r[k] = json.Number(x.String())
		}
	}
	return r
}
