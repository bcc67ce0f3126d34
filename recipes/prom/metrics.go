package prom

import "github.com/prometheus/client_golang/prometheus"

var (
	acquisitions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "music_prom_acquisitions_total",
		Help: "Resources this site became owner of.",
	}, []string{"site"})
	moves = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "music_prom_moves_total",
		Help: "Acquisitions whose previous owner was another site.",
	}, []string{"site"})
	yields = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "music_prom_yields_total",
		Help: "Resources this site released (on request, on abort or at close).",
	}, []string{"site"})
	failovers = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "music_prom_failovers_total",
		Help: "Acquisitions that took a resource over after its owner's lease ran out.",
	}, []string{"site"})
	lost = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "music_prom_lost_total",
		Help: "Ownerships this site lost without yielding (lease ran out).",
	}, []string{"site"})
	waitSeconds = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "music_prom_wait_seconds",
		Help:    "Time Use waited for ownership, for the uses it admitted.",
		Buckets: prometheus.ExponentialBuckets(0.0001, 4, 10), // 100µs .. 26s
	}, []string{"site"})
)

// Collectors returns the package's metrics, for registration by the server.
func Collectors() []prometheus.Collector {
	return []prometheus.Collector{acquisitions, moves, yields, failovers, lost, waitSeconds}
}
