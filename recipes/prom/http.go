package prom

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"
)

// Handler serves the prom REST resource:
//
//	GET /MUSIC/rest/v2/prom/{resource}  the owner as ZooKeeper knows it; 404 if none
//	GET /MUSIC/rest/v2/prom             what m owns: {"site", "owned": [...]}
//
// An ownership reads {"resource","owner","fence","since"} (since in RFC 3339).
func Handler(m *Manager) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /MUSIC/rest/v2/prom/{resource}", func(w http.ResponseWriter, req *http.Request) {
		name := req.PathValue("resource")
		o, ok, err := m.Owner(req.Context(), name)
		switch {
		case errors.Is(err, ErrName):
			writeJSON(w, http.StatusBadRequest, map[string]any{"resource": name, "error": err.Error()})
		case err != nil:
			writeJSON(w, http.StatusServiceUnavailable, map[string]any{"resource": name, "error": err.Error()})
		case !ok:
			writeJSON(w, http.StatusNotFound, map[string]any{"resource": name, "error": "no owner"})
		default:
			writeJSON(w, http.StatusOK, ownershipJSON(o))
		}
	})
	mux.HandleFunc("GET /MUSIC/rest/v2/prom", func(w http.ResponseWriter, req *http.Request) {
		owned := []any{}
		for _, o := range m.Owned() {
			owned = append(owned, ownershipJSON(o))
		}
		writeJSON(w, http.StatusOK, map[string]any{"site": m.site, "owned": owned})
	})
	return mux
}

func ownershipJSON(o Ownership) map[string]any {
	return map[string]any{"resource": o.Resource, "owner": o.Site, "fence": o.Fence,
		"since": o.Since.UTC().Format(time.RFC3339Nano)}
}

func writeJSON(w http.ResponseWriter, code int, body any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}
