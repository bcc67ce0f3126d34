package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/gocql/gocql"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/internal/testenv"
)

func newStore(t *testing.T) (*Store, *lock.Service, string) {
	t.Helper()
	ks, sess := testenv.NewKeyspace(t)
	locks, err := lock.New(testenv.ZKConnect(t), testenv.ZKRoot(t)+"/locks")
	if err != nil {
		t.Fatal(err)
	}
	s := New(sess, locks, nil)
	err = s.CreateTable(context.Background(), TableSpec{Keyspace: ks, Name: "emp",
		Columns:      map[string]string{"name": "text", "salary": "int", "tags": "list<text>", "id": "uuid"},
		PartitionKey: []string{"name"}})
	if err != nil {
		t.Fatal(err)
	}
	return s, locks, ks
}

func TestIdentifiersRejectInjection(t *testing.T) {
	for _, bad := range []string{"a;drop", "a b", "1a", "", "a'", "x)--", "ab\"c"} {
		if _, err := Ident("table", bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Ident(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	for _, bad := range []string{"text) WITH x", "list<text", "map<text,int>>"} {
		if _, err := ColumnType(bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("ColumnType(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if _, err := replication(map[string]any{"class": "SimpleStrategy", "replication_factor": "1}; DROP"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("replication injection: %v", err)
	}
}

func TestEventualRows(t *testing.T) {
	s, _, ks := newStore(t)
	ctx := context.Background()
	err := s.Insert(ctx, Write{Keyspace: ks, Table: "emp", Values: map[string]any{"name": "tom", "salary": "50", "tags": []any{"a"}}})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, Write{Keyspace: ks, Table: "emp", Key: map[string]any{"name": "tom"},
		Values: map[string]any{"salary": "60"}, Conditions: map[string]any{"salary": "49"}})
	if !errors.Is(err, ErrConditionFailed) {
		t.Fatalf("update with a false condition: %v", err)
	}
	err = s.Update(ctx, Write{Keyspace: ks, Table: "emp", Key: map[string]any{"name": "tom"},
		Values: map[string]any{"salary": "60"}, Conditions: map[string]any{"salary": "50"}})
	if err != nil {
		t.Fatal(err)
	}
	rows, err := s.Select(ctx, Query{Keyspace: ks, Table: "emp", Key: map[string]any{"name": "tom"}})
	if err != nil || len(rows) != 1 || rows[0]["salary"] != 60 {
		t.Fatalf("select = %v, %v", rows, err)
	}
	if _, err := s.Select(ctx, Query{Keyspace: ks, Table: "emp", Key: map[string]any{"nope": "x"}}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown column: %v", err)
	}
	if err := s.Delete(ctx, Write{Keyspace: ks, Table: "emp", Key: map[string]any{"name": "tom"}}); err != nil {
		t.Fatal(err)
	}
	rows, _ = s.Select(ctx, Query{Keyspace: ks, Table: "emp"})
	if len(rows) != 0 {
		t.Fatalf("rows after delete: %v", rows)
	}
}

func TestCriticalNeedsLock(t *testing.T) {
	s, locks, ks := newStore(t)
	ctx := context.Background()
	w := Write{Keyspace: ks, Table: "emp", Values: map[string]any{"name": "ann", "salary": "1"}, Mode: Critical}
	if err := s.Insert(ctx, w); !errors.Is(err, ErrLock) {
		t.Fatalf("no lock: %v", err)
	}
	other, _ := locks.Create(ctx, ks+".emp.bob", lock.Write, "", 0)
	w.LockRef = other.String()
	if err := s.Insert(ctx, w); !errors.Is(err, ErrLock) {
		t.Fatalf("another row's lock: %v", err)
	}
	a, _ := locks.Create(ctx, ks+".emp.ann", lock.Write, "", 0)
	b, _ := locks.Create(ctx, ks+".emp.ann", lock.Write, "", 0)
	w.LockRef = b.String()
	if err := s.Insert(ctx, w); !errors.Is(err, ErrLock) {
		t.Fatalf("queued, not holding: %v", err)
	}
	w.LockRef = a.String()
	if err := s.Insert(ctx, w); err != nil {
		t.Fatal(err)
	}
	r, _ := locks.Create(ctx, ks+".emp.cy", lock.Read, "", 0)
	rw := Write{Keyspace: ks, Table: "emp", Values: map[string]any{"name": "cy", "salary": "3"}, Mode: Critical, LockRef: r.String()}
	if err := s.Insert(ctx, rw); !errors.Is(err, ErrLock) {
		t.Fatalf("critical write under a read lock: %v, want ErrLock", err)
	}
	w.Mode, w.LockRef, w.Values = Atomic, "", map[string]any{"name": "zed", "salary": "2"}
	if err := s.Insert(ctx, w); err != nil {
		t.Fatalf("atomic: %v", err)
	}
}

// A holder whose lease expired is fenced: even a write that slipped past the lock check
// carries its old timestamp and loses to the next holder's write.
func TestStaleHolderFenced(t *testing.T) {
	s, locks, ks := newStore(t)
	ctx := context.Background()
	name := ks + ".emp.kim"
	a, _ := locks.Create(ctx, name, lock.Write, "a", 300*time.Millisecond)
	ha, err := locks.Acquire(ctx, a.String())
	if err != nil {
		t.Fatal(err)
	}
	put := func(ref string, v string) error {
		return s.Insert(ctx, Write{Keyspace: ks, Table: "emp", Values: map[string]any{"name": "kim", "salary": v},
			Mode: Critical, LockRef: ref})
	}
	if err := put(a.String(), "1"); err != nil {
		t.Fatal(err)
	}
	b, _ := locks.Create(ctx, name, lock.Write, "b", 0)
	testenv.Eventually(t, 5*time.Second, func() error { _, err := locks.Acquire(ctx, b.String()); return err })
	if err := put(b.String(), "2"); err != nil {
		t.Fatal(err)
	}
	if err := put(a.String(), "3"); !errors.Is(err, ErrLock) {
		t.Fatalf("stale holder's critical write: %v, want ErrLock", err)
	}
	// The stale holder's write reaches Cassandra anyway (it passed the check before expiry).
	o, err := s.prepare(ctx, opInsert, ks, "emp", map[string]any{"name": "kim", "salary": "3"}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.exec(ctx, o, &holder{ha}); err != nil {
		t.Fatal(err)
	}
	var got int
	if err := s.sess.Query("SELECT salary FROM " + ks + ".emp WHERE name = 'kim'").Consistency(gocql.Quorum).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != 2 {
		t.Fatalf("salary = %d, want 2: the stale holder overwrote the later holder", got)
	}
}
