package main

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// TestGatewayStatusToken: with status_token set, the gateway's /metrics and /status
// want the bearer token; /healthz stays open for probes.
func TestGatewayStatusToken(t *testing.T) {
	cfg := defaultGatewayConfig()
	cfg.StatusToken = "s3cret"
	mux := gatewayMux(cfg, prometheus.NewRegistry(), nil, nil)
	for _, c := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", http.StatusUnauthorized},
		{"/status", "Bearer wrong", http.StatusUnauthorized},
		{"/MUSIC/rest/v2/prom", "", http.StatusUnauthorized},
		{"/metrics", "Bearer s3cret", http.StatusOK},
		{"/healthz", "", http.StatusOK},
	} {
		req := httptest.NewRequest(http.MethodGet, c.path, nil)
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, req)
		if rec.Code != c.want {
			t.Errorf("GET %s (auth %q): %d, want %d", c.path, c.auth, rec.Code, c.want)
		}
	}
}
