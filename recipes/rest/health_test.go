package rest

import (
	"net/http"
	"testing"
)

func TestHealthAndVersion(t *testing.T) {
	e := newEnv(t)
	out := e.must(200, "GET", Prefix+"/service/musicHealthCheck", nil, "Authorization", "")
	if len(out) != 2 || out["Cassandra"] != "Active" || out["MUSIC"] != "Active" {
		t.Fatalf("musicHealthCheck = %v", out)
	}
	if out := e.must(200, "GET", Prefix+"/service/pingCassandra/QUORUM", nil); out["status"] != "ACTIVE" || out["ACTIVE"] != cassActive {
		t.Fatalf("pingCassandra/QUORUM = %v", out)
	}
	if out := e.must(400, "GET", Prefix+"/service/pingCassandra/STRONG", nil); out["status"] != "INVALID" {
		t.Fatalf("pingCassandra/STRONG = %v", out)
	}
	out = e.must(200, "GET", Prefix+"/version/build", nil)
	if out["version"] != "MUSIC:"+DefaultVersion || out["build"] != "MUSIC:"+DefaultVersion {
		t.Fatalf("version/build = %v", out)
	}
}

func TestVersionHeaders(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ minor, patch, wantMinor, wantPatch string }{
		{"", "", "0", "0"},
		{"1", "0", "1", "0"},
		{"7", "1;drop", "7", "0"},
	} {
		req, _ := http.NewRequest("GET", e.srv.URL+Prefix+"/version", nil)
		if tc.minor != "" {
			req.Header.Set("X-minorVersion", tc.minor)
			req.Header.Set("X-patchVersion", tc.patch)
		}
		res, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		h := res.Header
		if h.Get("X-minorVersion") != tc.wantMinor || h.Get("X-patchVersion") != tc.wantPatch || h.Get("X-latestVersion") != DefaultVersion {
			t.Errorf("request minor %q patch %q: headers %v", tc.minor, tc.patch, h)
		}
	}
}
