package capture

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The state bucket (Config.StateBucket, a JetStream KV bucket) holds:
//
//	checkpoint                the Checkpoint: the position whose events are all acknowledged
//	schema.<base64url(db.table)>  the table's schema history (SchemaHistory)
const checkpointKey = "checkpoint"

// Checkpoint is the stored resume position.
type Checkpoint struct {
	// Position is the GTID position (every domain) up to which all events were acknowledged
	// by JetStream; capture resumes the binlog dump exactly there.
	Position string `json:"position"`
	// File and Offset are the same point in the server's binlog, used only when the
	// server cannot find the GTID position (see Capturer.Run).
	File   string `json:"file,omitempty"`
	Offset uint32 `json:"offset,omitempty"`
	// ClockUs is the site's commit clock at Position, so that after a restart commit
	// times keep increasing (see reader.clockUs).
	ClockUs int64     `json:"clock_us,omitempty"`
	Updated time.Time `json:"updated"`
}

// state reads and writes the state bucket.
type state struct {
	kv jetstream.KeyValue
}

func openState(ctx context.Context, js jetstream.JetStream, bucket string, replicas int) (*state, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "MUSIC capture checkpoint and schema history",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("open state bucket %s: %w", bucket, err)
	}
	return &state{kv: kv}, nil
}

// LoadCheckpoint returns the stored checkpoint, or nil if there is none.
func (s *state) loadCheckpoint(ctx context.Context) (*Checkpoint, error) {
	e, err := s.kv.Get(ctx, checkpointKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return nil, fmt.Errorf("read checkpoint: %w", err)
	}
	return &cp, nil
}

func (s *state) saveCheckpoint(ctx context.Context, rp resumePoint) error {
	data, _ := json.Marshal(Checkpoint{Position: rp.Pos.String(), File: rp.File, Offset: rp.Offset, ClockUs: rp.ClockUs, Updated: time.Now().UTC()})
	if _, err := s.kv.Put(ctx, checkpointKey, data); err != nil {
		return fmt.Errorf("write checkpoint: %w", err)
	}
	return nil
}

func schemaKey(db, table string) string {
	return "schema." + base64.RawURLEncoding.EncodeToString([]byte(db+"."+table))
}

// loadHistories reads every table's schema history.
func (s *state) loadHistories(ctx context.Context) (map[string]*SchemaHistory, error) {
	out := map[string]*SchemaHistory{}
	lister, err := s.kv.ListKeysFiltered(ctx, "schema.>")
	if err != nil {
		return nil, fmt.Errorf("list schema history: %w", err)
	}
	for key := range lister.Keys() {
		e, err := s.kv.Get(ctx, key)
		if err != nil {
			return nil, fmt.Errorf("read schema history %s: %w", key, err)
		}
		var h SchemaHistory
		if err := json.Unmarshal(e.Value(), &h); err != nil {
			return nil, fmt.Errorf("read schema history %s: %w", key, err)
		}
		out[h.DB+"."+h.Table] = &h
	}
	return out, nil
}

func (s *state) saveHistory(ctx context.Context, h *SchemaHistory) error {
	data, _ := json.Marshal(h)
	if _, err := s.kv.Put(ctx, schemaKey(h.DB, h.Table), data); err != nil {
		return fmt.Errorf("write schema history of %s.%s: %w", h.DB, h.Table, err)
	}
	return nil
}
