package rest

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/music-coord/music/consistency/lock"
)

// lockKeyspace checks a lock name's keyspace against c's namespace.
func (a *API) lockKeyspace(w http.ResponseWriter, c caller, name string) bool {
	n, err := lock.ParseName(name)
	if err != nil {
		fail(w, err)
		return false
	}
	return a.allowed(w, c, n.Keyspace)
}

func (a *API) refKeyspace(w http.ResponseWriter, c caller, ref string) bool {
	p, err := lock.ParseRef(ref)
	if err != nil {
		fail(w, err)
		return false
	}
	return a.allowed(w, c, p.Name.Keyspace)
}

func (a *API) createLock(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	if !a.lockKeyspace(w, c, name) {
		return
	}
	var body jsonLock
	if err := decode(r.Body, &body, false); err != nil {
		fail(w, err)
		return
	}
	typ := lock.Write
	switch body.LockType {
	case "", "WRITE", "write":
	case "READ", "read":
		typ = lock.Read
	default:
		failure(w, http.StatusBadRequest, "locktype must be READ or WRITE, got "+strconv.Quote(body.LockType))
		return
	}
	lease, err := intField("leasePeriod", body.LeasePeriod)
	if err != nil {
		fail(w, err)
		return
	}
	ref, err := a.locks.Create(r.Context(), name, typ, r.Header.Get("owner"), time.Duration(lease)*time.Millisecond)
	if err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"lock": obj{"lock": ref.String()}})
}

func (a *API) acquireLock(w http.ResponseWriter, r *http.Request, c caller) {
	a.acquire(w, r, c, 0)
}

func (a *API) acquireWithLease(w http.ResponseWriter, r *http.Request, c caller) {
	var body jsonLock
	if err := decode(r.Body, &body, true); err != nil {
		fail(w, err)
		return
	}
	ms, err := intField("leasePeriod", body.LeasePeriod)
	if err != nil || ms == 0 {
		failure(w, http.StatusBadRequest, "leasePeriod must be a positive number of milliseconds")
		return
	}
	a.acquire(w, r, c, time.Duration(ms)*time.Millisecond)
}

// acquire answers 200 SUCCESS when the reference holds the lock, else 400 FAILURE as
// ONAP did (the client polls).
func (a *API) acquire(w http.ResponseWriter, r *http.Request, c caller, lease time.Duration) {
	ref := r.PathValue("ref")
	if !a.refKeyspace(w, c, ref) {
		return
	}
	var err error
	if lease > 0 {
		_, err = a.locks.AcquireWithLease(r.Context(), ref, lease)
	} else {
		_, err = a.locks.Acquire(r.Context(), ref)
	}
	body := obj{"lock": obj{"lock": ref}}
	if lease > 0 {
		body["lock"].(obj)["lock-lease"] = strconv.FormatInt(lease.Milliseconds(), 10)
	}
	switch {
	case err == nil:
		p, _ := lock.ParseRef(ref)
		body["message"] = strconv.FormatInt(p.Seq, 10) + " is the lock holder for the key"
		success(w, body)
	case errors.Is(err, lock.ErrNotHolder), errors.Is(err, lock.ErrNotFound):
		body["status"], body["error"], body["message"] = "FAILURE", err.Error(), err.Error()
		writeJSON(w, http.StatusBadRequest, body)
	default:
		fail(w, err)
	}
}

func (a *API) enquireLock(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	if !a.lockKeyspace(w, c, name) {
		return
	}
	h, err := a.locks.Enquire(r.Context(), name)
	if err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"lock": obj{"lock": name, "lock-holder": h}})
}

func (a *API) lockHolders(w http.ResponseWriter, r *http.Request, c caller) {
	name := r.PathValue("name")
	if !a.lockKeyspace(w, c, name) {
		return
	}
	h, err := a.locks.Holders(r.Context(), name)
	if err != nil {
		fail(w, err)
		return
	}
	success(w, obj{"lock": obj{"lock": name, "lock-holder": h}})
}

func (a *API) releaseLock(w http.ResponseWriter, r *http.Request, c caller) {
	ref := r.PathValue("ref")
	if !a.refKeyspace(w, c, ref) {
		return
	}
	err := a.locks.Release(r.Context(), ref)
	if err != nil && !errors.Is(err, lock.ErrNotFound) {
		fail(w, err)
		return
	}
	success(w, obj{"lock": obj{"lock": ref, "lock-status": "UNLOCKED"}})
}

// deleteLock is ONAP's (deprecated) delete: it removes the one lock reference
// $keyspace.table.key$N it is given.
func (a *API) deleteLock(w http.ResponseWriter, r *http.Request, c caller) {
	ref := r.PathValue("name")
	if !a.refKeyspace(w, c, ref) {
		return
	}
	if err := a.locks.Release(r.Context(), ref); err != nil {
		fail(w, err)
		return
	}
	success(w, nil)
}

// promoter is the lock service's optional promotion of a read reference to a write one.
type promoter interface {
	Promote(ctx context.Context, ref string) error
}

// promoteLock is ONAP's promote: a read reference becomes a write reference in place.
// A write reference answers 400 "Lockref is already write.", as ONAP.
func (a *API) promoteLock(w http.ResponseWriter, r *http.Request, c caller) {
	ref := r.PathValue("name")
	if !a.refKeyspace(w, c, ref) {
		return
	}
	body := obj{"lock": obj{"lock": ref}}
	h, err := a.locks.Check(r.Context(), ref)
	switch p, ok := a.locks.(promoter); {
	case err == nil && h.Type == lock.Write:
		err = errors.New("Lockref is already write.")
	case ok:
		err = p.Promote(r.Context(), ref)
	default:
		err = errors.New("Unable to promote lock: this lock service cannot promote read references")
	}
	if err != nil {
		body["status"], body["error"], body["message"] = "FAILURE", err.Error(), err.Error()
		writeJSON(w, http.StatusBadRequest, body)
		return
	}
	body["message"] = "Lock has successfully been upgraded."
	success(w, body)
}
