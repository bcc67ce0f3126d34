package capture

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the capture's Prometheus metrics (all labelled with the site).
type Metrics struct {
	Events           *prometheus.CounterVec // music_capture_events_total{site,op}
	Bytes            prometheus.Counter     // music_capture_bytes_total
	Transactions     prometheus.Counter     // music_capture_transactions_total
	Skipped          *prometheus.CounterVec // music_capture_skipped_transactions_total{site,reason}
	LagMs            prometheus.Gauge       // music_capture_lag_ms
	TableLagMs       *prometheus.GaugeVec   // music_capture_table_lag_ms{site,db,table}
	Checkpoint       *prometheus.GaugeVec   // music_capture_checkpoint_info{site,position}
	CheckpointTime   prometheus.Gauge       // music_capture_checkpoint_timestamp_seconds
	Errors           *prometheus.CounterVec // music_capture_errors_total{site,kind}
	Reconnects       prometheus.Counter     // music_capture_reconnects_total
	InFlight         prometheus.Gauge       // music_capture_in_flight_events
	NoPK             prometheus.Gauge       // music_capture_tables_without_pk
	StoppedTables    prometheus.Gauge       // music_capture_stopped_tables
	SnapshotRows     *prometheus.GaugeVec   // music_capture_snapshot_rows{site,db,table,state=done|total}
	SnapshotRate     *prometheus.GaugeVec   // music_capture_snapshot_rows_per_second{site,db,table}
	SnapshotETA      *prometheus.GaugeVec   // music_capture_snapshot_eta_seconds{site,db,table}
	Purged           prometheus.Gauge       // music_capture_purged: 1 while stopped by a purged binlog
	PurgeResnapshots prometheus.Counter     // music_capture_purge_resnapshots_total
	checkpointLabel  string
}

// NewMetrics creates the metrics and registers them with reg (which may be nil).
func NewMetrics(reg prometheus.Registerer, site string) *Metrics {
	cl := prometheus.Labels{"site": site}
	m := &Metrics{
		Events: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_capture_events_total",
			Help: "Change events acknowledged by JetStream, by operation.", ConstLabels: cl}, []string{"op"}),
		Bytes: prometheus.NewCounter(prometheus.CounterOpts{Name: "music_capture_bytes_total",
			Help: "Encoded bytes of published change events.", ConstLabels: cl}),
		Transactions: prometheus.NewCounter(prometheus.CounterOpts{Name: "music_capture_transactions_total",
			Help: "Source transactions published.", ConstLabels: cl}),
		Skipped: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_capture_skipped_transactions_total",
			Help: "Transactions not published: other domain (replayed by apply), skip_replication, filtered.", ConstLabels: cl}, []string{"reason"}),
		LagMs: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_capture_lag_ms",
			Help: "Milliseconds between the source commit and its processing; 0 when idle (heartbeats).", ConstLabels: cl}),
		TableLagMs: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_capture_table_lag_ms",
			Help: "Lag of the last event of each table.", ConstLabels: cl}, []string{"db", "table"}),
		Checkpoint: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_capture_checkpoint_info",
			Help: "The stored checkpoint GTID position (value 1).", ConstLabels: cl}, []string{"position"}),
		CheckpointTime: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_capture_checkpoint_timestamp_seconds",
			Help: "When the checkpoint was last stored.", ConstLabels: cl}),
		Errors: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "music_capture_errors_total",
			Help: "Errors by kind (mariadb, nats, publish, table, checkpoint).", ConstLabels: cl}, []string{"kind"}),
		Reconnects: prometheus.NewCounter(prometheus.CounterOpts{Name: "music_capture_reconnects_total",
			Help: "Restarts of the binlog session after an error.", ConstLabels: cl}),
		InFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_capture_in_flight_events",
			Help: "Published events not yet acknowledged.", ConstLabels: cl}),
		NoPK: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_capture_tables_without_pk",
			Help: "Captured tables without a primary key (keyed by all columns).", ConstLabels: cl}),
		StoppedTables: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_capture_stopped_tables",
			Help: "Tables stopped by a value capture cannot represent.", ConstLabels: cl}),
		SnapshotRows: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_capture_snapshot_rows",
			Help: "Snapshot progress: rows done and total (estimate).", ConstLabels: cl}, []string{"db", "table", "state"}),
		SnapshotRate: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_capture_snapshot_rows_per_second",
			Help: "Snapshot rate.", ConstLabels: cl}, []string{"db", "table"}),
		SnapshotETA: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "music_capture_snapshot_eta_seconds",
			Help: "Estimated seconds until the snapshot is done.", ConstLabels: cl}, []string{"db", "table"}),
		Purged: prometheus.NewGauge(prometheus.GaugeOpts{Name: "music_capture_purged",
			Help: "1 while capture is stopped because transactions after its checkpoint were purged from the binlog.", ConstLabels: cl}),
		PurgeResnapshots: prometheus.NewCounter(prometheus.CounterOpts{Name: "music_capture_purge_resnapshots_total",
			Help: "Purged binlogs recovered by auto_snapshot_on_purge (checkpoint moved to the binlog end, every table resnapshotted).", ConstLabels: cl}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.Events, m.Bytes, m.Transactions, m.Skipped, m.LagMs, m.TableLagMs,
			m.Checkpoint, m.CheckpointTime, m.Errors, m.Reconnects, m.InFlight, m.NoPK, m.StoppedTables,
			m.SnapshotRows, m.SnapshotRate, m.SnapshotETA, m.Purged, m.PurgeResnapshots} {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *Metrics) setCheckpoint(pos string) {
	if m.checkpointLabel != "" && m.checkpointLabel != pos {
		m.Checkpoint.DeleteLabelValues(m.checkpointLabel)
	}
	m.checkpointLabel = pos
	m.Checkpoint.WithLabelValues(pos).Set(1)
}
