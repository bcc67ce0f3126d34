package cas

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"
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

type claimInput struct{ job, owner string }

// claimModel is one job: the first claim wins, every later one loses. Histories are
// partitioned by job.
var claimModel = porcupine.Model{
	Partition: func(history []porcupine.Operation) [][]porcupine.Operation {
		byJob := map[string][]porcupine.Operation{}
		for _, op := range history {
			j := op.Input.(claimInput).job
			byJob[j] = append(byJob[j], op)
		}
		out := make([][]porcupine.Operation, 0, len(byJob))
		for _, ops := range byJob {
			out = append(out, ops)
		}
		return out
	},
	Init: func() any { return "" },
	Step: func(state, input, output any) (bool, any) {
		owner, won := state.(string), output.(bool)
		if owner == "" {
			return won, input.(claimInput).owner
		}
		return !won, owner
	},
	Equal: func(a, b any) bool { return a == b },
}

// Workers at three sites race to claim the same jobs: each job goes to exactly one, the
// row ends up naming that one, and the history of claims is linearizable.
// CAS_JOBS sets the number of jobs (default 150; the full run is 10000).
func TestClaimsRaceAcrossSites(t *testing.T) {
	jobs := 150
	if n, err := strconv.Atoi(os.Getenv("CAS_JOBS")); err == nil && n > 0 {
		jobs = n
	}
	ks, sites := newSites(t, 3)
	ctx := context.Background()
	const perSite = 2
	var mu sync.Mutex
	winners := map[string][]string{}
	var ops []porcupine.Operation
	start := time.Now()
	var wg sync.WaitGroup
	for si, s := range sites {
		for w := range perSite {
			owner := fmt.Sprintf("s%d-w%d", si, w)
			client := si*perSite + w
			wg.Go(func() {
				for j := range jobs {
					id := fmt.Sprintf("job%d", (j+client*7)%jobs) // workers meet on every job, in different orders
					call := time.Since(start).Nanoseconds()
					won, err := claim(ctx, s, ks, id, owner)
					ret := time.Since(start).Nanoseconds()
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					ops = append(ops, porcupine.Operation{ClientId: client, Input: claimInput{id, owner}, Output: won, Call: call, Return: ret})
					if won {
						winners[id] = append(winners[id], owner)
					}
					mu.Unlock()
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
	if !porcupine.CheckOperations(claimModel, ops) {
		t.Fatalf("history of %d claims is not linearizable", len(ops))
	}
	t.Logf("%d jobs, %d claims in %v", jobs, len(ops), time.Since(start).Round(time.Millisecond))
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
