package cas

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/gocql/gocql"

	"github.com/music-coord/music/consistency/lock"
	"github.com/music-coord/music/internal/testenv"
	"github.com/music-coord/music/recipes/store"
)

type site struct {
	cas  *CAS
	st   *store.Store
	sess *gocql.Session
}

// newSites returns n sites on one keyspace, each with its own Cassandra session,
// ZooKeeper connection and lock service, as separate MUSIC servers would have.
func newSites(t testing.TB, n int) (string, []site) {
	t.Helper()
	ks, sess := testenv.NewKeyspace(t)
	root := testenv.ZKRoot(t) + "/locks"
	var out []site
	for i := range n {
		if i > 0 {
			c := testenv.CassandraCluster(t)
			c.Keyspace = ks
			var err error
			if sess, err = c.CreateSession(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(sess.Close)
		}
		locks, err := lock.New(testenv.ZKConnect(t), root)
		if err != nil {
			t.Fatal(err)
		}
		st := store.New(sess, locks, nil)
		out = append(out, site{cas: New(st, locks, Config{}, nil), st: st, sess: sess})
	}
	err := out[0].st.CreateTable(context.Background(), store.TableSpec{Keyspace: ks, Name: "jobs",
		Columns: map[string]string{"id": "text", "owner": "text"}, PartitionKey: []string{"id"}})
	if err != nil {
		t.Fatal(err)
	}
	return ks, out
}

// claim takes job id for owner unless someone has it.
func claim(ctx context.Context, s site, ks, id, owner string) (bool, error) {
	won := false
	err := s.cas.Swap(ctx, Row{Keyspace: ks, Table: "jobs", Key: map[string]any{"id": id}},
		func(cur map[string]any) (Change, error) {
			if cur != nil && cur["owner"] != "" {
				return Change{}, nil
			}
			won = true
			return Change{Insert: map[string]any{"id": id, "owner": owner}}, nil
		})
	return won, err
}

// Workers at three sites race to claim the same jobs: each job goes to exactly one, and
// the row ends up naming that one.
func TestClaimsRaceAcrossSites(t *testing.T) {
	ks, sites := newSites(t, 3)
	ctx := context.Background()
	const jobs, perSite = 60, 2
	var mu sync.Mutex
	winners := map[string][]string{}
	var wg sync.WaitGroup
	for si, s := range sites {
		for w := range perSite {
			owner := fmt.Sprintf("s%d-w%d", si, w)
			wg.Go(func() {
				for j := range jobs {
					id := fmt.Sprintf("job%d", j)
					won, err := claim(ctx, s, ks, id, owner)
					if err != nil {
						t.Error(err)
						return
					}
					if won {
						mu.Lock()
						winners[id] = append(winners[id], owner)
						mu.Unlock()
					}
				}
			})
		}
	}
	wg.Wait()
	for j := range jobs {
		id := fmt.Sprintf("job%d", j)
		if got := winners[id]; len(got) != 1 {
			t.Fatalf("%s claimed by %v, want exactly one", id, got)
		}
		rows, err := sites[2].st.Select(ctx, store.Query{Keyspace: ks, Table: "jobs", Key: map[string]any{"id": id}})
		if err != nil || len(rows) != 1 || rows[0]["owner"] != winners[id][0] {
			t.Fatalf("%s row = %v, %v; want owner %s", id, rows, err, winners[id][0])
		}
	}
}

func TestSwapReturnsFunctionError(t *testing.T) {
	ks, sites := newSites(t, 1)
	err := sites[0].cas.Swap(context.Background(), Row{Keyspace: ks, Table: "jobs", Key: map[string]any{"id": "x"}},
		func(cur map[string]any) (Change, error) {
			if cur == nil {
				return Change{}, ErrNoRow
			}
			return Change{}, nil
		})
	if !errors.Is(err, ErrNoRow) {
		t.Fatalf("Swap = %v, want ErrNoRow", err)
	}
}
