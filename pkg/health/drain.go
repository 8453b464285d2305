package health

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// A drain is one shutdown of a Server, from the first signal to the end.
// It holds what the shutdown alone needs: the deadline's contexts, the
// second signal and the components' cancel. Its run method is the order.
type drain struct {
	s       *Server
	cause   string             // what started it: a signal, "context done", a server that stopped
	sigs    <-chan os.Signal   // a second signal ends the drain at once
	stopRun context.CancelFunc // ends the components' Run contexts

	// interrupt ends both contexts, with the second signal as the cause.
	interrupt context.CancelCauseFunc
	root      context.Context
	// hooksCtx ends at the deadline. ctx ends expireReserve earlier, so
	// that giveUp has time for the hooks and the marker. A second signal
	// ends both.
	hooksCtx context.Context
	ctx      context.Context
}

// secondSignal is the cause of a drain's contexts when a second signal
// ended them.
type secondSignal struct{ sig os.Signal }

func (e secondSignal) Error() string { return "second signal: " + e.sig.String() }

// run walks the drain from the signal to the end. Every wait in it ends
// at the deadline or at a second signal, and then giveUp is the way out.
// A drain that a failure started (a listener or component that stopped
// serving) keeps the others serving through the delay too: endpoint lag
// still routes requests to them, as to any pod.
func (d *drain) run() error {
	s := d.s

	// 1. The signal. Draining closes, readiness follows the policy, and
	// ShutdownTimeout counts from here.
	s.beginDrain()
	s.log.Info("signal received: draining", d.signalAttrs()...)
	stopWatching := d.arm(s.drainStart.Add(s.cfg.ShutdownTimeout))
	defer stopWatching()

	// 2. Keep serving while the endpoint removal propagates.
	if delay := s.cfg.DrainDelay; delay > 0 {
		select {
		case <-time.After(delay):
		case <-d.ctx.Done():
			return d.giveUp("drain delay", nil)
		}
	}
	s.report.phase(PhaseDelay, time.Now())
	s.log.Info("drain delay over", "elapsed", s.sinceDrain(), "requests_during_delay", s.drained.Load())
	s.warnLate()

	// 3. Not ready for good. Every listener and component stops, side by
	// side, and the long-lived requests are asked to leave in turn.
	s.readiness.close()
	go s.longLived.spread(d.ctx, d.leaveWindow())
	pending, errs := s.stopServers(d.ctx)
	if d.ctx.Err() != nil {
		return d.giveUp(s.stuckServers(), pending)
	}
	s.report.phase(PhaseConnections, s.connsClosedAt())
	s.report.phase(PhaseRequests, time.Now())
	s.log.Info("servers drained", "elapsed", s.sinceDrain(), "requests_after_signal", s.drained.Load())

	// 4. The background work the requests started.
	for !s.tasks.closeIfIdle() {
		select {
		case <-s.tasks.done:
		case <-d.ctx.Done():
			return d.giveUp("background work", nil)
		}
	}
	_, started := s.tasks.counts()
	s.report.phase(PhaseBackgroundWork, time.Now())
	s.log.Info("background work drained", "elapsed", s.sinceDrain(), "tasks_total", started)

	// 5. Cleanup, in reverse order of registration. The hooks may run
	// until the deadline itself.
	err := errors.Join(errs, s.runStops(d.hooksCtx))
	if d.hooksCtx.Err() != nil {
		return d.giveUp("stop hooks", nil)
	}
	s.report.phase(PhaseHooks, time.Now())
	s.log.Info("stop hooks done", "elapsed", s.sinceDrain())

	// 6. The marker goes last, as the process is about to exit.
	err = errors.Join(err, s.stopMarker())
	s.setState(StateStopped)
	s.log.Info("drained, exiting", "elapsed", s.sinceDrain(), "error", err)
	s.logReport(EndClean)
	return err
}

// arm sets the drain's contexts to end at deadline, and watches for a
// second signal until the returned func is called.
func (d *drain) arm(deadline time.Time) (stopWatching func()) {
	d.root, d.interrupt = context.WithCancelCause(context.Background())
	hooksCtx, cancelHooks := context.WithDeadlineCause(d.root, deadline, ErrShutdownTimeout)
	ctx, cancel := context.WithDeadlineCause(hooksCtx, deadline.Add(-expireReserve(d.s.cfg.ShutdownTimeout)), ErrShutdownTimeout)
	d.hooksCtx, d.ctx = hooksCtx, ctx
	done := make(chan struct{})
	go func() {
		select {
		case sig := <-d.sigs:
			d.interrupt(secondSignal{sig})
		case <-done:
		}
	}()
	return func() {
		close(done)
		cancel()
		cancelHooks()
		d.interrupt(nil)
	}
}

// leaveWindow is the time over which the long-lived requests are asked to
// leave: Config.LeaveWindow, by default half the time left.
func (d *drain) leaveWindow() time.Duration {
	switch w := d.s.cfg.LeaveWindow; {
	case w < 0:
		return 0
	case w > 0:
		return w
	}
	deadline, _ := d.ctx.Deadline()
	return max(time.Until(deadline)/2, 0)
}

// interrupted returns the second signal, or nil if none came.
func (d *drain) interrupted() os.Signal {
	var second secondSignal
	if errors.As(context.Cause(d.root), &second) {
		return second.sig
	}
	return nil
}

// giveUp is the one way out of a drain that did not finish: the deadline
// came in phase, or a second signal did. Either way, serving stops at
// once, every connection is cut, and the components' and the background
// work's contexts are cancelled. After a second signal nothing more runs.
// After the deadline, the components still stopping (pending) say what
// they cut, and the hooks run until the deadline itself. The marker goes
// in both cases.
func (d *drain) giveUp(phase string, pending *stopping) error {
	s := d.s
	s.readiness.close()
	sig := d.interrupted()
	cause := error(ErrShutdownTimeout)
	if sig != nil {
		cause = ErrInterrupted
	}
	longLived := s.longLived.cutAll(cause)
	active, idle, h2, hijacked := s.cutAll()
	d.stopRun()
	abandoned := s.tasks.abandon()
	if sig != nil {
		s.log.Warn("second signal: exiting at once", "signal", sig.String(), "phase", phase,
			"elapsed", s.sinceDrain(), "tasks_abandoned", abandoned, "long_lived_cut", longLived)
		return d.end(EndSecondSignal, fmt.Errorf("%w (%s)", ErrInterrupted, sig))
	}
	s.log.Error("shutdown timeout: abandoning what is left", "phase", phase, "elapsed", s.sinceDrain(),
		"tasks_abandoned", abandoned, "long_lived_cut", longLived, "active_conns", active, "idle_conns", idle,
		"h2_conns", h2, "hijacked_conns", hijacked)
	err := errors.Join(
		fmt.Errorf("%w after %s in phase %q: %d background tasks abandoned", ErrShutdownTimeout, s.sinceDrain().Round(time.Millisecond), phase, abandoned),
		d.collect(pending), s.runStops(d.hooksCtx))
	if sig := d.interrupted(); sig != nil { // it came while the hooks ran
		s.log.Warn("second signal: exiting at once", "signal", sig.String(), "phase", "stop hooks", "elapsed", s.sinceDrain())
		return d.end(EndSecondSignal, errors.Join(fmt.Errorf("%w (%s)", ErrInterrupted, sig), err))
	}
	return d.end(EndDeadline, err)
}

// collect waits, until the deadline, for the components and listeners
// still stopping to report, and returns what they say they cut.
func (d *drain) collect(pending *stopping) error {
	if pending == nil {
		return nil
	}
	var cut []error
	for range pending.n {
		select {
		case err := <-pending.results:
			if err != nil {
				d.s.log.Error("cut at the deadline", "error", err)
				cut = append(cut, err)
			}
		case <-d.hooksCtx.Done():
			return errors.Join(cut...)
		}
	}
	return errors.Join(cut...)
}

// end removes the marker and writes the report of a drain that gave up.
func (d *drain) end(how End, err error) error {
	err = errors.Join(err, d.s.stopMarker())
	d.s.setState(StateStopped)
	d.s.logReport(how)
	return err
}

// signalAttrs describe the server at the signal, for the log.
func (d *drain) signalAttrs() []any {
	s := d.s
	attrs := []any{"signal", d.cause, "readiness", s.cfg.DrainReadiness.String()}
	if ls := s.drainedListeners(); len(ls) > 0 { // a gRPC-only service has no HTTP connections to count
		var active, idle, h2 int
		for _, l := range ls {
			a, i, h, _ := l.conns.counts()
			active, idle, h2 = active+a, idle+i, h2+h
		}
		attrs = append(attrs, "active_conns", active, "idle_conns", idle, "h2_conns", h2)
	}
	running, _ := s.tasks.counts()
	return append(attrs, "long_lived", s.longLived.count(), "tasks_running", running, "drain_delay", max(s.cfg.DrainDelay, 0), "shutdown_timeout", s.cfg.ShutdownTimeout)
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
			switch {
			case err == nil:
			case ctx.Err() != nil:
				err = nil // the deadline cut it, and giveUp counts what it cut
			default:
				err = fmt.Errorf("%s: %w", l.name, err)
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

// expireReserve is the part of ShutdownTimeout kept for giveUp: a tenth,
// at most a second.
func expireReserve(timeout time.Duration) time.Duration { return min(timeout/10, time.Second) }

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
