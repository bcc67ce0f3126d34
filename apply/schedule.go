package apply

import (
	"context"
	"sync"

	"go.uber.org/zap"
)

// OrderHinter is implemented by a sink that needs transactions on different rows applied
// in origin order: OrderKeys returns extra scheduling keys for a table, and a transaction
// touching the table waits for every earlier transaction of the origin that has one of its
// keys, as for a row both touch (apply/mariadb: "fk:<group>" for a table linked by foreign
// keys to others, so a parent's delete never overtakes its children's insert). Keys may
// depend on the schema: the worker asks only once the origin's earlier schema changes are
// applied. An error makes the transaction a barrier. OrderKeys is called from the
// worker's consumer, before the transaction is queued: it should answer from a cache.
type OrderHinter interface {
	OrderKeys(ctx context.Context, db, table string) ([]string, error)
}

// scheduler runs transactions in parallel while keeping, per row, the order in which they
// were submitted. A transaction with no row keys (DDL, or rows it cannot key) is a
// barrier.
type scheduler struct {
	mu       sync.Mutex
	last     map[string]*task // last submitted task per row key
	inflight map[*task]struct{}
	barrier  *task
	schema   *task         // the last schema change submitted (submitTxn), until done
	slots    chan struct{} // bounds queued+running tasks (back-pressure)
	workers  chan struct{} // bounds running tasks
	wg       sync.WaitGroup
}

type task struct {
	keys []string
	deps []*task
	done chan struct{}
}

func newScheduler(maxInFlight, workers int) *scheduler {
	return &scheduler{last: map[string]*task{}, inflight: map[*task]struct{}{},
		slots: make(chan struct{}, maxInFlight), workers: make(chan struct{}, workers)}
}

// submit queues run for keys (nil: a barrier). It blocks while the scheduler is full and
// returns ctx's error if ctx ends first. run is called once its dependencies are done,
// unless ctx ends before.
func (s *scheduler) submit(ctx context.Context, keys []string, run func()) error {
	return s.add(ctx, keys, false, run)
}

// submitTxn is submit for tx; a schema change is remembered until it is done (waitSchema).
func (s *scheduler) submitTxn(ctx context.Context, tx *Txn, keys []string, run func()) error {
	if tx.IsDDL() {
		return s.add(ctx, nil, true, run)
	}
	return s.add(ctx, keys, false, run)
}

func (s *scheduler) add(ctx context.Context, keys []string, schema bool, run func()) error {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	t := &task{keys: keys, done: make(chan struct{})}
	s.mu.Lock()
	if keys == nil {
		for d := range s.inflight {
			t.deps = append(t.deps, d)
		}
		s.barrier = t
		if schema {
			s.schema = t
		}
	} else {
		if s.barrier != nil {
			t.deps = append(t.deps, s.barrier)
		}
		for _, k := range keys {
			if d := s.last[k]; d != nil && d != t { // a row the transaction touches twice
				t.deps = append(t.deps, d)
			}
			s.last[k] = t
		}
	}
	s.inflight[t] = struct{}{}
	s.mu.Unlock()
	s.wg.Add(1)
	go s.run(ctx, t, run)
	return nil
}

// waitSchema waits until the last schema change submitted is done, or ctx ends.
func (s *scheduler) waitSchema(ctx context.Context) error {
	s.mu.Lock()
	t := s.schema
	s.mu.Unlock()
	if t == nil {
		return nil
	}
	select {
	case <-t.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// orderedKeys returns the scheduling keys of tx: its rows (txnKeys), plus the order keys
// the sinks give for its tables (OrderHinter), or nil: a barrier. The order keys are read
// after the origin's last schema change submitted is done (it may link or unlink tables);
// while a streamed transaction is being fed (waiting could block its feeding, and so the
// schema change behind it) tx is made a barrier instead. It returns an error only when ctx
// ends.
func (w *Worker) orderedKeys(ctx context.Context, r *run, tx *Txn) ([]string, error) {
	keys := txnKeys(tx)
	if keys == nil {
		return nil, nil
	}
	// Another site's sync transactions apply in its commit order per unit (the gateway's
	// catch-up reads their progress as a prefix); the site's own need no order beyond
	// their rows' (the gate's watermark allows for any completion order).
	if g := w.cfg.Gate; g != nil && !tx.Own {
		for _, t := range g.SyncTables(tx) {
			keys = append(keys, syncKey(t))
		}
	}
	var hinters []OrderHinter
	for _, s := range w.sinks {
		if h, ok := s.(OrderHinter); ok {
			hinters = append(hinters, h)
		}
	}
	if len(hinters) == 0 {
		return keys, nil
	}
	if len(r.streams) > 0 {
		r.sched.mu.Lock()
		pending := r.sched.schema != nil
		r.sched.mu.Unlock()
		if pending {
			return nil, nil
		}
	} else if err := r.sched.waitSchema(ctx); err != nil {
		return nil, err
	}
	seen := map[[2]string]bool{}
	for _, e := range tx.Events {
		t := [2]string{e.Source.DB, e.Source.Table}
		if seen[t] {
			continue
		}
		seen[t] = true
		for _, h := range hinters {
			extra, err := h.OrderKeys(ctx, t[0], t[1])
			if err != nil {
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
				w.log.Debug("order keys unknown; the transaction is a barrier", zap.String("gtid", tx.ID),
					zap.String("table", t[0]+"."+t[1]), zap.Error(err))
				return nil, nil
			}
			keys = append(keys, extra...)
		}
	}
	return keys, nil
}

func (s *scheduler) run(ctx context.Context, t *task, run func()) {
	defer s.wg.Done()
	defer func() { <-s.slots }()
	for _, d := range t.deps {
		select {
		case <-d.done:
		case <-ctx.Done():
			return
		}
	}
	select {
	case s.workers <- struct{}{}:
	case <-ctx.Done():
		return
	}
	run()
	<-s.workers
	s.mu.Lock()
	for _, k := range t.keys {
		if s.last[k] == t {
			delete(s.last, k)
		}
	}
	if s.barrier == t {
		s.barrier = nil
	}
	if s.schema == t {
		s.schema = nil
	}
	delete(s.inflight, t)
	s.mu.Unlock()
	close(t.done)
}

// wait waits for every submitted task to finish or give up.
func (s *scheduler) wait() { s.wg.Wait() }

// running is the number of queued or running tasks.
func (s *scheduler) running() int { return len(s.slots) }
