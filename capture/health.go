package capture

import (
	"encoding/json"
	"net/http"
)

// HealthHandler serves c's health as JSON: 200 while streaming without error, 503
// otherwise (starting, retrying after an error until a session makes progress again,
// stopped, purged binlog) with the error. Stopped tables are listed but do not fail the
// check. StatusHandler serves the details.
func HealthHandler(c *Capturer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		st := c.Status()
		body := map[string]any{"site": c.cfg.Site, "status": "ok", "state": st.State}
		status := http.StatusOK
		if err := c.Health(); err != nil {
			body["status"], body["error"] = "unavailable", err.Error()
			status = http.StatusServiceUnavailable
		}
		if st.Purged {
			body["purged"] = true
		}
		if p := c.Acked(); p != nil {
			body["checkpoint"] = p.String()
		}
		if errs := c.TableErrors(); len(errs) > 0 {
			stopped := map[string]string{}
			for t, err := range errs {
				stopped[t] = err.Error()
			}
			body["stopped_tables"] = stopped
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body)
	})
}
