package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// errAborted ends a drain that a second signal interrupted: it stops where
// it is, and run says what was dropped.
var errAborted = errors.New("drain aborted")

// drain runs the shutdown sequence, from the signal to the marker's
// removal. After a failure (a listener or component that stopped serving)
// the others still get the drain delay: endpoint lag routes requests to
// them as to any pod. Closing abort ends it at once with errAborted: every
// wait in it watches its contexts, which abort and the deadlines end.
//
// ShutdownTimeout bounds it all: the phases run until the deadline less
// expireReserve, which is left for what expire does after them (the
// components' last words, the hooks, the marker). The hooks' context, on
// every path, ends at the deadline itself.
func (s *Server) drain(abort <-chan struct{}) error {
	deadline := s.drainStart.Add(s.cfg.ShutdownTimeout)
	hooksCtx, cancelHooks := context.WithDeadlineCause(context.Background(), deadline, ErrShutdownTimeout)
	defer cancelHooks()
	ctx, cancel := context.WithDeadlineCause(hooksCtx, deadline.Add(-expireReserve(s.cfg.ShutdownTimeout)), ErrShutdownTimeout)
	defer cancel()
	go func() {
		select {
		case <-abort:
			cancelHooks()
			cancel()
		case <-ctx.Done():
		}
	}()
	s.hooksCtx = hooksCtx
	aborted := func() bool {
		select {
		case <-abort:
			return true
		default:
			return false
		}
	}
	// expire gives up on what is left: the deadline's doing, or the
	// second signal's (then run cleans up).
	expire := func(phase string, pending *stopping) error {
		if aborted() {
			return errAborted
		}
		return s.expire(phase, pending)
	}

	// 1. Keep serving while the endpoint removal propagates.
	if d := s.cfg.DrainDelay; d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return expire("drain delay", nil)
		}
	}
	s.report.phase(PhaseDelay, time.Now())
	s.log.Info("drain delay over", "elapsed", s.sinceDrain(), "requests_during_delay", s.drained.Load())
	s.warnLate()

	// 2. Not ready for good, as every listener and component stops side
	// by side.
	s.readiness.close()
	pending, errs := s.stopServers(ctx)
	if ctx.Err() != nil {
		return expire(s.stuckServers(), pending)
	}
	s.report.phase(PhaseConnections, s.connsClosedAt())
	s.report.phase(PhaseRequests, time.Now())
	s.log.Info("servers drained", "elapsed", s.sinceDrain(), "requests_after_signal", s.drained.Load())

	// 3. The background work the requests started.
	for !s.tasks.closeIfIdle() {
		select {
		case <-s.tasks.done:
		case <-ctx.Done():
			return expire("background work", nil)
		}
	}
	_, started := s.tasks.counts()
	s.report.phase(PhaseBackgroundWork, time.Now())
	s.log.Info("background work drained", "elapsed", s.sinceDrain(), "tasks_total", started)

	// 4. Cleanup, in reverse order of registration, until the deadline
	// itself.
	err := errors.Join(errs, s.runStops(hooksCtx))
	if hooksCtx.Err() != nil {
		return expire("stop hooks", nil)
	}
	s.report.phase(PhaseHooks, time.Now())
	s.log.Info("stop hooks done", "elapsed", s.sinceDrain())

	// 5. The marker goes last: the process is about to exit.
	err = errors.Join(err, s.stopMarker())
	s.setState(StateStopped)
	s.log.Info("drained, exiting", "elapsed", s.sinceDrain(), "error", err)
	s.logReport(EndClean)
	return err
}

// stopServers drains every listener but the admin one and shuts every
// component down, concurrently, and waits for all of them or for ctx. It
// returns the channel on which the ones still running will report, and the
// errors of those that ended.
func (s *Server) stopServers(ctx context.Context) (pending *stopping, errs error) {
	n := 1 + len(s.apis) + len(s.comps)
	results := make(chan error, n)
	var wg sync.WaitGroup
	for _, l := range s.drainedListeners() {
		wg.Go(func() {
			err := l.drain(ctx)
			if err != nil && ctx.Err() == nil {
				err = fmt.Errorf("%s: %w", l.name, err)
			} else {
				err = nil // cut at the deadline: expire counts what it cuts
			}
			results <- err
		})
	}
	for _, c := range s.comps {
		wg.Go(func() {
			err := c.shutdown(ctx)
			if err == nil {
				s.log.Info("component stopped", "component", c.name, "elapsed", s.sinceDrain())
			}
			results <- err
		})
	}
	all := make(chan struct{})
	go func() { wg.Wait(); close(all) }()
	select {
	case <-all:
	case <-ctx.Done():
		return &stopping{results, n}, nil
	}
	close(results)
	var list []error
	for err := range results {
		if err != nil {
			s.log.Error("server stopped with an error", "error", err)
			list = append(list, err)
		}
	}
	return nil, errors.Join(list...)
}

// connsClosedAt is when the last drained listener had closed its
// keep-alive connections (now if none recorded it).
func (s *Server) connsClosedAt() time.Time {
	var last int64
	for _, l := range s.drainedListeners() {
		last = max(last, l.connsDone.Load())
	}
	if last == 0 {
		return time.Now()
	}
	return time.Unix(0, last)
}

// stuckServers names the listeners and components still stopping, with
// the step each is in: the phase a deadline cut.
func (s *Server) stuckServers() string {
	var stuck []string
	for _, l := range s.drainedListeners() {
		if p := l.step.Load(); p != nil && *p != "" {
			stuck = append(stuck, l.name+" "+*p)
		}
	}
	for _, c := range s.comps {
		if p := c.step.Load(); p != nil && *p != "" {
			stuck = append(stuck, c.name+" "+*p)
		}
	}
	return "servers: " + strings.Join(stuck, ", ")
}

// stopping is the stop phase cut short by the deadline: n results are
// still to come on results, one per listener and component.
type stopping struct {
	results <-chan error
	n       int
}

// expireReserve is the part of ShutdownTimeout kept for expire: a tenth,
// at most a second.
func expireReserve(timeout time.Duration) time.Duration { return min(timeout/10, time.Second) }

// expire ends a drain that ran out of time in phase: it cuts every
// listener's connections, cancels the components' and the background
// work's contexts, lets the components' Shutdowns (reporting on pending)
// say what they cut, runs the hooks and removes the marker, all within the
// deadline (s.hooksCtx).
func (s *Server) expire(phase string, pending *stopping) error {
	s.readiness.close()
	active, idle, h2, hijacked := s.cutAll()
	s.cancelRun()
	abandoned := s.tasks.abandon()
	s.log.Error("shutdown timeout: abandoning what is left", "phase", phase, "elapsed", s.sinceDrain(),
		"tasks_abandoned", abandoned, "active_conns", active, "idle_conns", idle, "h2_conns", h2, "hijacked_conns", hijacked)
	ctx := s.hooksCtx
	var cut []error
	if pending != nil {
	collect:
		for range pending.n {
			select {
			case err := <-pending.results:
				if err != nil {
					s.log.Error("cut at the deadline", "error", err)
					cut = append(cut, err)
				}
			case <-ctx.Done():
				break collect
			}
		}
	}
	err := errors.Join(
		fmt.Errorf("%w after %s in phase %q: %d background tasks abandoned", ErrShutdownTimeout, s.sinceDrain().Round(time.Millisecond), phase, abandoned),
		errors.Join(cut...), s.runStops(ctx), s.stopMarker())
	s.setState(StateStopped)
	s.logReport(EndDeadline)
	return err
}

// cutAll closes what is left of every drained listener (the deadline's, or
// a second signal's end) and returns what it cut.
func (s *Server) cutAll() (active, idle, h2, hijacked int) {
	for _, l := range s.drainedListeners() {
		a, i, h, j := l.cut()
		active, idle, h2, hijacked = active+a, idle+i, h2+h, hijacked+j
	}
	return active, idle, h2, hijacked
}

// runStops runs the OnStop hooks once, in reverse order. It returns when
// they have, or when ctx ends: a hook that ignores its context is left
// running, and holds neither the deadline nor a second signal.
func (s *Server) runStops(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		stops := s.stops
		s.hooksTaken = true
		s.mu.Unlock()
		done := make(chan error, 1)
		go func() {
			var errs []error
			for i := len(stops) - 1; i >= 0; i-- {
				if err := stops[i](ctx); err != nil {
					s.log.Error("stop hook failed", "error", err)
					errs = append(errs, err)
				}
			}
			done <- errors.Join(errs...)
		}()
		select {
		case s.stopErr = <-done:
		case <-ctx.Done():
			s.stopErr = fmt.Errorf("stop hooks: %w", ctx.Err())
		}
	})
	return s.stopErr
}
