package service

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/drainwell/drainwell/cmd/app/counter"
)

// service is the articles' guinea pig: POST /incr answers at once and
// increments the counter WorkDelay later, as tracked background work;
// GET /watch streams the increments as they are applied (watch.go).
type service struct {
	log       *slog.Logger
	counter   counter.Counter
	workDelay time.Duration
	// run tracks background work; *health.Server in production.
	run       func(func(context.Context)) error
	abandoned atomic.Int64
	inDoubt   atomic.Int64 // of abandoned: cut while an attempt was in flight
	// increments accepted and not yet applied or abandoned, and their
	// bound (0: DefaultMaxPending)
	pending    atomic.Int64
	maxPending int64
	throttled  logThrottle
	// longLived declares a watch stream to the drain
	// (*health.Server.LongLived in production; nil: no drain to leave)
	longLived func(context.Context) (turn context.Context, left func())
	watchPing time.Duration // 0: WatchPing
}

func (s *service) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/incr", s.handleIncr)
	mux.HandleFunc("/count", s.handleCount)
	mux.HandleFunc("/watch", s.handleWatch)
	return mux
}

func (s *service) handleIncr(w http.ResponseWriter, r *http.Request) {
	// POST only: clients and proxies retry a GET, and an increment must
	// not count twice.
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", "POST")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	// The request is read whole before anything is done for it: a body
	// that never arrives (or never ends) must not leave an increment
	// behind that no response reports.
	if !s.readBody(w, r) {
		return
	}
	// The request's ID goes with its increment: a retry after a lost
	// reply is then not counted twice.
	switch err := s.startIncr(rand.Text(), time.Now()); {
	case errors.Is(err, errTooMuchWork):
		w.Header().Set("Retry-After", "1")
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	case err != nil:
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok\n")) // a client that hung up: nothing to do
}

// MaxBody bounds a request's body, and BodyTimeout the time it may take to
// arrive (the drain cuts it sooner: IDLE_CLOSE after the listener closed).
const (
	MaxBody     = 64 << 10
	BodyTimeout = 10 * time.Second
)

// readBody reads r's body to its end, bounded in size and time, and reports
// whether it could; if not, it has answered.
func (s *service) readBody(w http.ResponseWriter, r *http.Request) bool {
	if r.Body == nil || r.Body == http.NoBody {
		return true
	}
	// Only while a body is read: net/http's read after the body must
	// keep no deadline (its failure would cancel the request's context).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(BodyTimeout)) // unsupported: the drain's bound remains
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, MaxBody))
	if err == nil {
		return true
	}
	if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
		http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
	} else {
		http.Error(w, "request body incomplete", http.StatusRequestTimeout)
	}
	return false
}

func (s *service) handleCount(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	n, err := s.counter.Get(r.Context())
	if err != nil {
		s.throttled.log(s.log, slog.LevelError, "count unavailable", "error", err)
		http.Error(w, "count unavailable", http.StatusServiceUnavailable)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte(strconv.FormatInt(n, 10) + "\n")) // a client that hung up: nothing to do
}

// incr does the simulated work, then increments the counter for request
// id, retrying with backoff until it is applied, ctx (the shutdown
// deadline) ends, or counter.RetryLimit has passed since the request was
// accepted (after which Redis may have forgotten the ID). It never drops
// an increment silently, and never applies one twice.
func (s *service) incr(ctx context.Context, id string, accepted time.Time) {
	ctx, cancel := context.WithDeadline(ctx, accepted.Add(counter.RetryLimit))
	defer cancel()
	if !sleep(ctx, s.workDelay) {
		s.abandon(ctx, 0, nil)
		return
	}
	backoff := 50 * time.Millisecond
	for attempt := 1; ; attempt++ {
		err := s.counter.Incr(ctx, id)
		if err == nil {
			if attempt > 1 {
				s.throttled.log(s.log, slog.LevelInfo, "increment landed after retries", "attempts", attempt)
			}
			return
		}
		if ctx.Err() != nil {
			// Cut while its script was on its way: Redis may have
			// received it whole and run it after.
			s.inDoubt.Add(1)
			s.abandon(ctx, attempt, err)
			return
		}
		s.throttled.log(s.log, slog.LevelWarn, "increment failed, retrying", "attempt", attempt, "backoff", backoff, "error", err)
		if !sleep(ctx, backoff) {
			s.abandon(ctx, attempt, err)
			return
		}
		backoff = min(backoff*2, 2*time.Second)
	}
}

func (s *service) abandon(ctx context.Context, attempts int, err error) {
	n := s.abandoned.Add(1)
	s.throttled.log(s.log, slog.LevelError, "increment abandoned at the shutdown deadline or the retry limit", "attempts", attempts,
		"error", errors.Join(err, ctx.Err()), "abandoned_total", n, "in_doubt_total", s.inDoubt.Load())
}

// abandonedErr says how many increments were abandoned, and how many of
// those were cut while a script was in flight (Redis may have run it:
// counted, though abandoned), or nil.
func (s *service) abandonedErr() error {
	n, doubt := s.abandoned.Load(), s.inDoubt.Load()
	switch {
	case n == 0:
		return nil
	case doubt == 0:
		return fmt.Errorf("%d increments abandoned", n)
	}
	return fmt.Errorf("%d increments abandoned, %d of them in doubt (cut in flight: Redis may have applied them)", n, doubt)
}

func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
