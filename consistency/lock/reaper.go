package lock

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

var forcedReleases = prometheus.NewCounter(prometheus.CounterOpts{
	Name: "music_lock_forced_releases_total",
	Help: "Lock references released by force because their lease expired.",
})

// Collectors returns the package's metrics, for registration by the server.
func Collectors() []prometheus.Collector { return []prometheus.Collector{forcedReleases} }

// Reap makes one pass over every queue and releases expired references by force. It
// returns how many it released.
func (s *Service) Reap(ctx context.Context) (int, error) {
	names, _, err := s.conn.Children(s.root)
	if err != nil {
		return 0, fmt.Errorf("lock: list %s: %w", s.root, err)
	}
	total := 0
	for _, node := range names {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		raw, err := url.PathUnescape(node)
		if err != nil {
			continue
		}
		n, err := ParseName(raw)
		if err != nil {
			continue
		}
		k, err := s.reapName(n)
		total += k
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

func (s *Service) reapName(n Name) (int, error) {
	q, err := s.queue(n)
	if err != nil {
		return 0, err
	}
	k := 0
	for _, e := range q.entries {
		gone, err := s.releaseIfExpired(n, e)
		if err != nil {
			return k, err
		}
		if gone {
			k++
		}
	}
	return k, nil
}

// RunReaper calls Reap every interval until ctx ends, backing off on errors.
func (s *Service) RunReaper(ctx context.Context, interval time.Duration) {
	wait := interval
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		n, err := s.Reap(ctx)
		switch {
		case err != nil && !errors.Is(err, context.Canceled):
			s.log.Warn("lock reaper pass failed", zap.Error(err))
			wait = min(wait*2, 10*interval)
		default:
			wait = interval
			if n > 0 {
				s.log.Info("lock reaper released expired locks", zap.Int("count", n))
			}
		}
	}
}
