package apply

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/music-coord/music/internal/testenv"
)

// TestQuarantinePersists: a quarantine survives the agent (a new set loads it), reaches
// another process's set, and a release written to the bucket from outside (music resync)
// lifts it everywhere.
func TestQuarantinePersists(t *testing.T) {
	_, js := testenv.Connect(t, testenv.NATS(t))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bucket := testenv.Prefix(t) + "_APPLY"
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = js.DeleteKeyValue(context.Background(), bucket) })

	first, other := NewQuarantineSet(), NewQuarantineSet()
	for _, q := range []*QuarantineSet{first, other} {
		if err := q.Persist(ctx, kv, zap.NewNop()); err != nil {
			t.Fatal(err)
		}
	}
	const table = "shop.orders.2024" // dots and all: the key is encoded
	first.Quarantine(table, "gtid 1-1-9: Key may not be empty")
	testenv.Eventually(t, 10*time.Second, func() error {
		if !other.IsQuarantined(table) {
			return fmt.Errorf("the other set has not seen the quarantine")
		}
		return nil
	})

	restarted := NewQuarantineSet() // the agent after a restart
	if err := restarted.Persist(ctx, kv, zap.NewNop()); err != nil {
		t.Fatal(err)
	}
	if got := restarted.Quarantined()[table].Reason; got != "gtid 1-1-9: Key may not be empty" {
		t.Fatalf("after restart: reason %q", got)
	}

	if err := ReleaseStored(ctx, kv, table); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		for i, q := range []*QuarantineSet{first, other, restarted} {
			if q.IsQuarantined(table) {
				return fmt.Errorf("set %d still quarantines %s", i, table)
			}
		}
		return nil
	})
}
