package capture

import (
	"errors"
	"fmt"
	"net"
	"path"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/music-coord/music/changeevent"
)

// Config configures one capture agent (one site's MariaDB into JetStream).
type Config struct {
	// Site is the origin site's name (the "a" of music.cdc.a.db.table).
	Site string `yaml:"site"`
	// DSN is the MariaDB DSN in go-sql-driver form, e.g. root@tcp(127.0.0.1:3306)/.
	// The user needs REPLICATION SLAVE, BINLOG MONITOR and SELECT.
	DSN string `yaml:"dsn"`
	// NATSURL is the NATS server (or cluster) URL.
	NATSURL string `yaml:"nats_url"`
	// ServerID is the tailer's replication server id. 0 means 1000000 + DomainID, which
	// never collides with the sites' server ids (1..N).
	ServerID uint32 `yaml:"server_id"`
	// DomainID is the site's gtid_domain_id. Only transactions of this domain are
	// published (the others are changes replayed by MUSIC's apply: no loops).
	DomainID uint32 `yaml:"domain_id"`
	// DropSkipReplication drops transactions flagged with @@skip_replication=1.
	DropSkipReplication bool `yaml:"drop_skip_replication"`

	// Stream is the JetStream stream (default changeevent.StreamName(Site)).
	Stream string `yaml:"stream"`
	// StateBucket is the JetStream KV bucket holding the checkpoint and schema history
	// (default MUSIC_CAPTURE_<SITE>).
	StateBucket string `yaml:"state_bucket"`
	// Replicas of the stream and the bucket (1 for a single NATS server).
	Replicas int `yaml:"replicas"`
	// DuplicateWindow is the stream's message-id deduplication window (default 24h). A
	// capture that was down for less than it re-publishes without duplicates. JetStream
	// keeps every id of the window in memory (roughly 100 bytes each): size it to the
	// longest capture outage to absorb and the event rate (24h at 100 events/s is about
	// 860 MB on the NATS server).
	DuplicateWindow time.Duration `yaml:"duplicate_window"`
	// MaxInFlight bounds unacknowledged asynchronous publishes (default 4096).
	MaxInFlight int `yaml:"max_in_flight"`
	// MaxTxnBuffer is how many events of one transaction are buffered to learn its row
	// count; bigger transactions stream (Transaction.Total 0 until the last event).
	MaxTxnBuffer int `yaml:"max_txn_buffer"`
	// MessageEvents and MessageBytes bound one JetStream message: consecutive events of
	// one transaction (or snapshot chunk) on one subject share a message, up to
	// MessageEvents events (default 500) and MessageBytes bytes of body (default 256 KiB).
	// The grouping decides the message ids: change them only with a fresh stream, or
	// accept duplicates after the change (as for Include/Exclude).
	MessageEvents int `yaml:"message_events"`
	MessageBytes  int `yaml:"message_bytes"`
	// PartSize: an event whose encoding is bigger goes alone, cut into part messages of at
	// most PartSize bytes (default changeevent.DefaultPartSize, 512 KiB). Keep it under the
	// NATS server's max_payload (1 MiB by default).
	PartSize int `yaml:"part_size"`
	// AutoSnapshotOnPurge: when the binlog no longer holds every transaction after the
	// checkpoint (purged), capture logs the lost GTID range at error level, counts
	// music_capture_purge_resnapshots_total, continues from the binlog's current end and
	// resnapshots every captured table. Off (the default), capture stops with a
	// *PurgedError instead.
	AutoSnapshotOnPurge bool `yaml:"auto_snapshot_on_purge"`
	// CheckpointInterval is how often the acknowledged position is stored (default 1s).
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Start is where a capture without checkpoint begins: "current" (the binlog's end),
	// "earliest" (the oldest binlog), an explicit GTID position such as "1-1-100,2-2-7",
	// or a binlog offset "binlog:<file>:<offset>" (as SHOW MASTER STATUS shows it).
	Start string `yaml:"start"`

	// Include and Exclude are glob patterns (path.Match) on "db.table". A table is
	// captured when it matches an include pattern (none means all) and no exclude pattern.
	// The system schemas are always excluded.
	Include []string `yaml:"include"`
	Exclude []string `yaml:"exclude"`

	// Heartbeat is the MariaDB heartbeat period that keeps the lag fresh when idle.
	Heartbeat time.Duration `yaml:"heartbeat"`
	// MaxBackoff caps the exponential backoff between reconnects (default 30s).
	MaxBackoff time.Duration `yaml:"max_backoff"`
	// InitialSnapshot snapshots every captured table (as Capturer.Snapshot does) when
	// capture starts without a checkpoint; a restart resumes with the tables not done.
	InitialSnapshot bool `yaml:"initial_snapshot"`
	// SnapshotChunk is the number of rows per snapshot chunk (default 5000).
	SnapshotChunk int `yaml:"snapshot_chunk"`
}

// SystemSchemas are never captured: MariaDB's own, and "music", where apply keeps its
// per-site metadata (row versions, applied DDL). An apply configured with another
// meta schema needs that schema in Exclude.
var SystemSchemas = []string{"mysql", "information_schema", "performance_schema", "sys", "music"}

// DefaultConfig returns the defaults; Site, DSN and DomainID still need setting.
func DefaultConfig() Config {
	return Config{
		NATSURL:             "nats://127.0.0.1:4222",
		DropSkipReplication: true,
		Replicas:            1,
		DuplicateWindow:     24 * time.Hour,
		MaxInFlight:         4096,
		MaxTxnBuffer:        10000,
		MessageEvents:       500,
		MessageBytes:        256 << 10,
		PartSize:            changeevent.DefaultPartSize,
		CheckpointInterval:  time.Second,
		Start:               "current",
		Heartbeat:           time.Second,
		MaxBackoff:          30 * time.Second,
		SnapshotChunk:       5000,
	}
}

// withDefaults fills the derived defaults (server id, stream and bucket names) and the
// message limits left 0.
func (c Config) withDefaults() Config {
	if c.ServerID == 0 {
		c.ServerID = 1000000 + c.DomainID
	}
	d := DefaultConfig()
	if c.MessageEvents == 0 {
		c.MessageEvents = d.MessageEvents
	}
	if c.MessageBytes == 0 {
		c.MessageBytes = d.MessageBytes
	}
	if c.PartSize == 0 {
		c.PartSize = d.PartSize
	}
	if c.Stream == "" {
		c.Stream = changeevent.StreamName(c.Site)
	}
	if c.StateBucket == "" {
		c.StateBucket = "MUSIC_CAPTURE_" + strings.ToUpper(changeevent.Token(c.Site))
	}
	return c
}

// Validate returns an error naming the first wrong field.
func (c Config) Validate() error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("capture: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Site == "" {
		bad("site", "required (the origin site's name)")
	} else if changeevent.Token(c.Site) != c.Site {
		bad("site", "%q may only contain letters, digits, '_' and '-'", c.Site)
	}
	if c.DSN == "" {
		bad("dsn", "required (e.g. root@tcp(127.0.0.1:3306)/)")
	} else if _, err := parseDSN(c.DSN); err != nil {
		bad("dsn", "%v", err)
	}
	if c.NATSURL == "" {
		bad("nats_url", "required")
	}
	if c.DomainID == 0 {
		bad("domain_id", "required: the site's gtid_domain_id (1..N)")
	}
	if c.ServerID != 0 && c.ServerID < 1000 {
		bad("server_id", "%d is in the range of site server ids; use >= 1000 or 0 for 1000000+domain_id", c.ServerID)
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		bad("replicas", "%d is not 1..5", c.Replicas)
	}
	if c.DuplicateWindow < time.Minute {
		bad("duplicate_window", "%s is shorter than 1m", c.DuplicateWindow)
	}
	if c.MaxInFlight < 1 {
		bad("max_in_flight", "%d must be positive", c.MaxInFlight)
	}
	if c.MaxTxnBuffer < 1 {
		bad("max_txn_buffer", "%d must be positive", c.MaxTxnBuffer)
	}
	if c.MessageEvents < 0 {
		bad("message_events", "%d must be positive (0: the default)", c.MessageEvents)
	}
	if c.MessageBytes < 0 {
		bad("message_bytes", "%d must be positive (0: the default)", c.MessageBytes)
	}
	if c.PartSize != 0 && c.PartSize < 1024 {
		bad("part_size", "%d is below 1024 bytes (0: the default)", c.PartSize)
	}
	if c.CheckpointInterval <= 0 {
		bad("checkpoint_interval", "must be positive")
	}
	if c.Heartbeat <= 0 {
		bad("heartbeat", "must be positive")
	}
	if c.MaxBackoff <= 0 {
		bad("max_backoff", "must be positive")
	}
	if c.SnapshotChunk < 1 {
		bad("snapshot_chunk", "%d must be positive", c.SnapshotChunk)
	}
	switch c.Start {
	case "current", "earliest":
	default:
		if _, _, ok := parseFileStart(c.Start); ok {
			break
		}
		if _, err := ParsePosition(c.Start); err != nil {
			bad("start", "%q is not current, earliest, a GTID position or binlog:<file>:<offset>: %v", c.Start, err)
		}
	}
	for _, p := range append(append([]string{}, c.Include...), c.Exclude...) {
		if _, err := path.Match(p, "x.y"); err != nil || !strings.Contains(p, ".") {
			bad("include/exclude", "pattern %q is not a glob of the form db.table", p)
		}
	}
	return errors.Join(errs...)
}

func parseDSN(dsn string) (*mysql.Config, error) {
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	if mc.Net != "tcp" {
		return nil, fmt.Errorf("network %q: only tcp is supported", mc.Net)
	}
	host, port, err := net.SplitHostPort(mc.Addr)
	if err != nil {
		return nil, fmt.Errorf("address %q: %v", mc.Addr, err)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil || host == "" {
		return nil, fmt.Errorf("address %q: want host:port", mc.Addr)
	}
	return mc, nil
}
