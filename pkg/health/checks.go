package health

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"
)

// checkResult is a check's last run.
// errCheckStuck is the result of a check whose last call, cut by
// CheckTimeout, has not returned: it is not called again until it does.
var errCheckStuck = errors.New("still running since an earlier check (it ignores its context)")

type checkResult struct {
	err error
	dur time.Duration
	at  time.Time
}

// checkErrors returns the checks and their errors: the last background
// run's with CheckInterval, a new run otherwise.
func (s *Server) checkErrors(ctx context.Context) ([]check, []error) {
	s.mu.Lock()
	checks, results := s.checks, s.results
	s.mu.Unlock()
	if s.cfg.CheckInterval > 0 && len(results) == len(checks) {
		errs := make([]error, len(checks))
		for i, r := range results {
			errs[i] = r.err
		}
		return checks, errs
	}
	return checks, s.runShared(ctx, checks)
}

// checkRun is an on-demand run of the checks; its errs are set when done
// is closed.
type checkRun struct {
	done chan struct{}
	errs []error
}

// runShared runs the checks on demand, or joins the run in progress:
// concurrent /ready calls (the kubelet, a load balancer, a scrape) cost
// one run, not one each.
func (s *Server) runShared(ctx context.Context, checks []check) []error {
	s.mu.Lock()
	if r := s.onDemand; r != nil {
		s.mu.Unlock()
		select {
		case <-r.done:
			return r.errs
		case <-ctx.Done():
			errs := make([]error, len(checks))
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		}
	}
	r := &checkRun{done: make(chan struct{})}
	s.onDemand = r
	s.mu.Unlock()
	// Not the first caller's context: the others share the run. Each
	// check is bounded by CheckTimeout.
	r.errs = s.runChecks(context.WithoutCancel(ctx), checks)
	s.mu.Lock()
	s.onDemand = nil
	s.mu.Unlock()
	close(r.done)
	return r.errs
}

// checkLoop runs the checks every CheckInterval until ctx ends or the pod
// is not ready for good, and tells OnReadyChange when their verdict
// changes.
func (s *Server) checkLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.CheckInterval)
	defer t.Stop()
	for {
		s.mu.Lock()
		checks := s.checks
		s.mu.Unlock()
		errs := s.runChecks(ctx, checks)
		if ctx.Err() != nil {
			return
		}
		ok := true
		for _, err := range errs {
			ok = ok && err == nil
		}
		s.setCheckVerdict(ok, checks, errs)
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		case <-s.readiness.closed: // not ready for good: nothing to check
			return
		}
	}
}

// setCheckVerdict reports the checks' verdict to OnReadyChange, while it
// decides what /ready answers.
func (s *Server) setCheckVerdict(ok bool, checks []check, errs []error) {
	switch s.State() {
	case StateReady:
		s.readiness.set(ok, failedChecks(checks, errs))
	case StateDraining:
		reason := reasonDraining
		if !ok {
			reason = failedChecks(checks, errs)
		}
		s.readiness.set(ok, reason)
	}
}

// runChecks runs the checks concurrently, each under the check timeout,
// and records their results.
func (s *Server) runChecks(ctx context.Context, checks []check) []error {
	errs := make([]error, len(checks))
	results := make([]checkResult, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(ctx, s.cfg.CheckTimeout)
			defer cancel()
			t0 := time.Now()
			if !c.running.CompareAndSwap(false, true) {
				errs[i] = errCheckStuck
				results[i] = checkResult{err: errs[i], at: t0}
				return
			}
			done := make(chan error, 1)
			go func() {
				err := c.fn(ctx)
				// Free before the result is handed over: a run right
				// after this one must not find it still running.
				c.running.Store(false)
				done <- err
			}()
			select {
			case errs[i] = <-done:
			case <-ctx.Done():
				errs[i] = ctx.Err()
			}
			results[i] = checkResult{err: errs[i], dur: time.Since(t0), at: t0}
		})
	}
	wg.Wait()
	s.mu.Lock()
	if len(checks) == len(s.checks) {
		s.results = results
	}
	s.mu.Unlock()
	return errs
}

// checkResults returns the checks' last results, for Stats.
func (s *Server) checkResults() []CheckStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]CheckStats, len(s.checks))
	for i, c := range s.checks {
		out[i].Name = c.name
		if i < len(s.results) {
			r := s.results[i]
			out[i].OK, out[i].Duration, out[i].At = r.err == nil, r.dur, r.at
		}
	}
	return out
}

// failedChecks names the checks that failed, for OnReadyChange.
func failedChecks(checks []check, errs []error) string {
	var names []string
	for i, err := range errs {
		if err != nil {
			names = append(names, checks[i].name+": "+oneLine(err.Error()))
		}
	}
	if len(names) == 0 {
		return "ready"
	}
	return "checks failed: " + strings.Join(names, "; ")
}
