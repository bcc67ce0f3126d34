package apply

import (
	"context"
	"sync"
)

// scheduler runs transactions in parallel while keeping, per row, the order in which they
// were submitted. A transaction with no row keys (DDL, or rows it cannot key) is a
// barrier.
type scheduler struct {
	mu       sync.Mutex
	last     map[string]*task // last submitted task per row key
	inflight map[*task]struct{}
	barrier  *task
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
	delete(s.inflight, t)
	s.mu.Unlock()
	close(t.done)
}

// wait waits for every submitted task to finish or give up.
func (s *scheduler) wait() { s.wg.Wait() }

// running is the number of queued or running tasks.
func (s *scheduler) running() int { return len(s.slots) }
