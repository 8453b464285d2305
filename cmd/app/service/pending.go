package service

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"
)

// DefaultMaxPending bounds the increments accepted and not yet applied.
// While Redis is down they wait in memory (about 16 KB each, a goroutine
// and its retry timer), and an OOM kill would lose every one: beyond the
// bound the service refuses new ones (503, Retry-After) rather than accept
// what it may never apply.
const DefaultMaxPending = 10000

var (
	errShuttingDown = errors.New("shutting down")
	errTooMuchWork  = errors.New("too many increments pending")
)

// startIncr accepts an increment, as tracked background work, unless
// MaxPending are pending or the drain has stopped taking work.
func (s *service) startIncr(id string, accepted time.Time) error {
	limit := s.maxPending
	if limit <= 0 {
		limit = DefaultMaxPending
	}
	if s.pending.Add(1) > limit {
		s.pending.Add(-1)
		s.throttled.log(s.log, slog.LevelWarn, "increment refused: too many pending (Redis down or slow?)", "max_pending", limit)
		return errTooMuchWork
	}
	err := s.run(func(ctx context.Context) {
		defer s.pending.Add(-1)
		s.incr(ctx, id, accepted)
	})
	if err != nil {
		s.pending.Add(-1)
		return errShuttingDown
	}
	return nil
}

// logThrottle lets one log line a second through per cause (its message),
// and says how many it held back since the last one: with Redis down, every
// pending increment's retry would otherwise log (115,626 lines for 20,000
// increments, measured).
type logThrottle struct {
	mu   sync.Mutex
	last map[string]time.Time
	held map[string]int
}

// throttleEvery is how often a cause may log.
const throttleEvery = time.Second

func (t *logThrottle) allow(cause string) (ok bool, held int) {
	now := time.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.last == nil {
		t.last, t.held = make(map[string]time.Time), make(map[string]int)
	}
	if last, seen := t.last[cause]; seen && now.Sub(last) < throttleEvery {
		t.held[cause]++
		return false, 0
	}
	held, t.last[cause] = t.held[cause], now
	delete(t.held, cause)
	return true, held
}

// log logs msg at level, if its cause may log now.
func (t *logThrottle) log(l *slog.Logger, level slog.Level, msg string, args ...any) {
	if ok, held := t.allow(msg); ok {
		l.Log(context.Background(), level, msg, append(args, "similar_lines_held_back", held)...)
	}
}
