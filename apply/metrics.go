package apply

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the music_apply_* Prometheus metrics, shared by the workers of one process.
type Metrics struct {
	Transactions *prometheus.CounterVec   // origin, sink
	Rows         *prometheus.CounterVec   // origin, sink, outcome (applied, duplicate, conflict)
	Conflicts    *prometheus.CounterVec   // origin, table, sink
	Refused      *prometheus.CounterVec   // origin, table, sink ("" for a change refused before any sink saw it)
	Skipped      *prometheus.CounterVec   // origin, table: transactions skipped because a table is quarantined
	Fenced       *prometheus.CounterVec   // origin, table: sync transactions fenced out (committed without ownership)
	Quarantined  *prometheus.GaugeVec     // origin: tables quarantined (a shared QuarantineSet counts for every origin)
	Unassembled  *prometheus.CounterVec   // origin, table: transactions that could not be assembled within MaxAckPending
	Errors       *prometheus.CounterVec   // origin, sink (failed attempts, retried)
	LagMs        *prometheus.GaugeVec     // origin, table: ms behind origin commit time
	Lag          *prometheus.HistogramVec // origin: seconds from origin commit to applied
	Pending      *prometheus.GaugeVec     // origin: messages not yet applied (consumer pending + unacknowledged)
	Duration     *prometheus.HistogramVec // sink: seconds per transaction apply
}

// NewMetrics creates the metrics and registers them with reg (if not nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Transactions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_transactions_total",
			Help: "Source transactions applied, per origin site and sink."}, []string{"origin", "sink"}),
		Rows: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_rows_total",
			Help: "Row changes by outcome: applied, duplicate (re-delivery) or conflict (older than the row's version)."},
			[]string{"origin", "sink", "outcome"}),
		Conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_conflicts_total",
			Help: "Row changes not applied because a newer version of the row won (last writer wins)."},
			[]string{"origin", "table", "sink"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_refused_total",
			Help: "Changes refused (malformed, unsupported DDL, table without primary key, bad identifier), per table; the table is quarantined, see the status."},
			[]string{"origin", "table", "sink"}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_skipped_transactions_total",
			Help: "Transactions acknowledged without being applied because a table they touch is quarantined: resync the table."},
			[]string{"origin", "table"}),
		Fenced: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_fenced_transactions_total",
			Help: "Transactions on sync tables not applied: their origin committed them without owning the table (lost ownership, or a write that bypassed the gateway)."},
			[]string{"origin", "table"}),
		Quarantined: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_apply_quarantined_tables",
			Help: "Tables quarantined (a change could not be applied; later changes are skipped until a resync releases them)."},
			[]string{"origin"}),
		Unassembled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_unassembled_transactions_total",
			Help: "Transactions with more messages than max_ack_pending: they cannot be assembled; their tables are quarantined."},
			[]string{"origin", "table"}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_apply_errors_total",
			Help: "Failed apply attempts (retried with backoff)."}, []string{"origin", "sink"}),
		LagMs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_apply_lag_milliseconds",
			Help: "Milliseconds between the origin commit and the apply of the last transaction per table; 0 when caught up."},
			[]string{"origin", "table"}),
		Lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "music_apply_lag_seconds",
			Help:    "Seconds from origin commit to apply, per transaction.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"origin"}),
		Pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_apply_pending_messages",
			Help: "Change events of an origin not yet applied here (consumer pending plus unacknowledged)."},
			[]string{"origin"}),
		Duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "music_apply_duration_seconds",
			Help: "Seconds to apply one transaction, per sink.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)},
			[]string{"sink"}),
	}
	if reg != nil {
		reg.MustRegister(m.Transactions, m.Rows, m.Conflicts, m.Refused, m.Skipped, m.Fenced, m.Quarantined, m.Unassembled, m.Errors, m.LagMs, m.Lag, m.Pending, m.Duration)
	}
	return m
}
