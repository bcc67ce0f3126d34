package capture

import (
	"context"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap/zaptest"

	"github.com/music-coord/music/internal/testenv"
)

// A site stepping AUTO_INCREMENT ids by 1 is flagged: warning, gauge, status field.
func TestAutoIncrementCheck(t *testing.T) {
	site := testenv.Sites(t)[0]
	cfg := DefaultConfig()
	cfg.Site, cfg.DSN, cfg.NATSURL, cfg.DomainID = "aicheck", site.DSN(""), "nats://127.0.0.1:1", uint32(site.Index)
	cfg.Include = []string{"x.*"}
	reg := prometheus.NewRegistry()
	c, err := New(cfg, zaptest.NewLogger(t), reg)
	if err != nil {
		t.Fatal(err)
	}
	db, err := c.openDB()
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var inc int
	if err := db.QueryRow("SELECT @@global.auto_increment_increment").Scan(&inc); err != nil {
		t.Fatal(err)
	}
	c.checkAutoIncrement(context.Background(), db)
	mfs, _ := reg.Gather()
	var gauge float64 = -1
	for _, mf := range mfs {
		if mf.GetName() == "music_capture_auto_increment_unsafe" {
			gauge = mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	w := c.Status().AutoIncrement
	switch {
	case inc <= 1 && (gauge != 1 || !strings.Contains(w, "auto_increment_increment=1")):
		t.Fatalf("increment %d: gauge %v, status %q", inc, gauge, w)
	case inc > 1 && (gauge != 0 || w != ""):
		t.Fatalf("increment %d: gauge %v, status %q", inc, gauge, w)
	}
}
