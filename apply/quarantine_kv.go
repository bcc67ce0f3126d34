package apply

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/music-coord/music/changeevent"
)

// A quarantine must outlive the agent: skipped changes are acknowledged, so an agent that
// forgot a quarantine at restart would apply the table's later changes on top of a state
// that misses the skipped ones. QuarantineSet.Persist keeps the set in a JetStream
// key-value bucket (one per site, shared by every worker of the site's apply agent and by
// `music resync`, which releases a table once it is repaired).

// QuarantineBucket is the default KV bucket of a site's quarantines: the apply agent keeps
// them there and music resync releases them there.
func QuarantineBucket(site string) string {
	return "MUSIC_QUARANTINE_" + strings.ToUpper(changeevent.Token(site))
}

// quarantineKeyPrefix starts every quarantine key in the bucket; the rest is the table name
// in unpadded base64url (KV keys allow only [-/_=.a-zA-Z0-9]).
const quarantineKeyPrefix = "quarantine."

// QuarantineKey is the bucket key of table's quarantine.
func QuarantineKey(table string) string {
	return quarantineKeyPrefix + base64.RawURLEncoding.EncodeToString([]byte(table))
}

type quarantineRecord struct {
	Table string `json:"table"`
	Quarantine
}

// Persist loads the quarantines kept in kv into q, writes every later Quarantine and
// Release of q through to kv, and follows kv until ctx ends, so that a release written by
// another process (music resync) reaches q. It returns once the stored entries are loaded.
func (q *QuarantineSet) Persist(ctx context.Context, kv jetstream.KeyValue, log *zap.Logger) error {
	w, err := kv.Watch(ctx, quarantineKeyPrefix+">")
	if err != nil {
		return fmt.Errorf("apply: watch quarantines in %s: %w", kv.Bucket(), err)
	}
	q.mu.Lock()
	q.kv, q.log = kv, log
	q.mu.Unlock()
	loaded := false
	for !loaded {
		select {
		case e, ok := <-w.Updates():
			if !ok {
				return fmt.Errorf("apply: watch quarantines in %s: closed", kv.Bucket())
			}
			if e == nil {
				loaded = true // the stored entries are all delivered
				continue
			}
			q.applyEntry(e, log)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	go func() {
		defer func() { _ = w.Stop() }()
		for {
			select {
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e != nil {
					q.applyEntry(e, log)
				}
			case <-ctx.Done():
				return
			}
		}
	}()
	return nil
}

// applyEntry brings q in line with one bucket entry, without writing back.
func (q *QuarantineSet) applyEntry(e jetstream.KeyValueEntry, log *zap.Logger) {
	raw, err := base64.RawURLEncoding.DecodeString(strings.TrimPrefix(e.Key(), quarantineKeyPrefix))
	if err != nil {
		log.Warn("ignoring a malformed quarantine key", zap.String("key", e.Key()))
		return
	}
	table := string(raw)
	if e.Operation() != jetstream.KeyValuePut {
		q.set(table, nil)
		return
	}
	var r quarantineRecord
	if err := json.Unmarshal(e.Value(), &r); err != nil {
		r.Reason = "quarantine record unreadable: " + err.Error()
	}
	q.set(table, &r.Quarantine)
}

// store writes one change of the set to the bucket, if the set is persisted. A failure is
// returned to the caller, who logs it: the set in memory is still right for this process.
func (q *QuarantineSet) store(kv jetstream.KeyValue, table string, why *Quarantine) error {
	if kv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), persistTimeout)
	defer cancel()
	if why == nil {
		err := kv.Delete(ctx, QuarantineKey(table))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		return err
	}
	data, err := json.Marshal(quarantineRecord{Table: table, Quarantine: *why})
	if err != nil {
		return err
	}
	_, err = kv.Put(ctx, QuarantineKey(table), data)
	return err
}

// ReleaseStored releases table's quarantine in the bucket kv directly (music resync, from
// outside the apply agent, which follows the bucket and releases it in its workers).
func ReleaseStored(ctx context.Context, kv jetstream.KeyValue, table string) error {
	err := kv.Delete(ctx, QuarantineKey(table))
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		return fmt.Errorf("apply: release quarantine of %s: %w", table, err)
	}
	return nil
}
