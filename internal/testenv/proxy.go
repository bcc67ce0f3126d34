package testenv

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/collectors"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// Proxy is a TCP proxy (toxiproxy, in process) between a process and a service, for
// injecting faults on one link: Cut closes its connections and refuses new ones until
// Heal; Latency delays every byte in both directions.
type Proxy struct {
	t testing.TB
	p *toxiproxy.Proxy
}

// NewProxy starts a proxy to upstream (host:port) on a free port of 127.0.0.1; it is
// stopped at cleanup.
func NewProxy(t testing.TB, upstream string) *Proxy {
	t.Helper()
	srv := toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
	srv.Metrics.ProxyMetrics = collectors.NewProxyMetricCollectors()
	p := toxiproxy.NewProxy(srv, UniqueName(t), FreeAddr(t), upstream)
	if err := p.Start(); err != nil {
		t.Fatalf("testenv: proxy to %s: %v", upstream, err)
	}
	t.Cleanup(p.Stop)
	return &Proxy{t: t, p: p}
}

// Addr is where clients connect instead of upstream.
func (p *Proxy) Addr() string { return p.p.Listen }

// Cut closes every connection through the proxy and refuses new ones.
func (p *Proxy) Cut() { p.p.Stop() }

// Heal accepts connections again.
func (p *Proxy) Heal() {
	p.t.Helper()
	if err := p.p.Start(); err != nil && !strings.Contains(err.Error(), "already started") {
		p.t.Fatalf("testenv: heal proxy %s: %v", p.p.Name, err)
	}
}

// Latency adds d to each direction of the link (0 removes it).
func (p *Proxy) Latency(d time.Duration) {
	p.t.Helper()
	for _, dir := range []string{"upstream", "downstream"} {
		_ = p.p.Toxics.RemoveToxic(context.Background(), "latency_"+dir) // none yet is fine
		if d <= 0 {
			continue
		}
		body := `{"name":"latency_` + dir + `","type":"latency","stream":"` + dir + `","attributes":{"latency":` +
			strconv.FormatInt(d.Milliseconds(), 10) + `}}`
		if _, err := p.p.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
			p.t.Fatalf("testenv: latency on %s: %v", p.p.Name, err)
		}
	}
}
