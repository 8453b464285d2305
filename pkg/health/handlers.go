package health

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

func probeMethodOK(w http.ResponseWriter, r *http.Request) bool {
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		return true
	}
	w.Header().Set("Allow", "GET, HEAD")
	writeText(w, http.StatusMethodNotAllowed, "method not allowed\n")
	return false
}

// writeText writes the status first, then the body: a handler that writes
// the body first has already sent 200.
func writeText(w http.ResponseWriter, code int, body string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body)) // a prober that hung up: nothing to do
}

// serveLive answers 200 while the process can serve at all. It depends on
// nothing outside the process.
func (s *Server) serveLive(w http.ResponseWriter, r *http.Request) {
	if probeMethodOK(w, r) {
		writeText(w, http.StatusOK, "ok\n")
	}
}

// serveReady answers 200 while the server serves with every check
// passing, else 503 with a short reason. From the signal on it says that
// the pod is draining, and answers 503 once the drain has made it not
// ready for good (at the signal with NotReadyAtSignal, when the listeners
// stop accepting otherwise). ?verbose lists each check as kube-apiserver's
// /readyz does; only then, and only where detail is allowed, are the
// checks' error texts shown.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request, detail bool) {
	if !probeMethodOK(w, r) {
		return
	}
	_, verbose := r.URL.Query()["verbose"]
	verbose = verbose && detail
	st, ok, checks, errs := s.evaluate(r.Context())
	if !ok {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+st.String()+"\n")
		return
	}
	failed := false
	var b strings.Builder
	for i, c := range checks {
		switch {
		case errs[i] == nil:
			if verbose {
				b.WriteString("[+]" + c.name + " ok\n")
			}
		case verbose:
			failed = true
			b.WriteString("[-]" + c.name + ": " + oneLine(errs[i].Error()) + "\n")
		default:
			failed = true
			b.WriteString("[-]" + c.name + " failed\n")
		}
	}
	if st == StateDraining {
		b.WriteString("draining: serving until the listeners close\n")
	}
	if failed {
		b.WriteString("not ready\n")
		writeText(w, http.StatusServiceUnavailable, b.String())
		return
	}
	b.WriteString("ok\n")
	writeText(w, http.StatusOK, b.String())
}

// evaluate runs the checks (or reads their last background run) and
// returns the state, whether /ready may answer 200 in it, and the checks'
// errors (none when it may not). A drain step that began while the checks
// ran wins.
func (s *Server) evaluate(ctx context.Context) (State, bool, []check, []error) {
	if st, ok := s.servingState(); !ok {
		return st, false, nil, nil
	}
	checks, errs := s.checkErrors(ctx)
	st, ok := s.servingState()
	if !ok {
		return st, false, nil, nil
	}
	if s.cfg.CheckInterval == 0 {
		s.setCheckVerdict(allNil(errs), checks, errs)
	}
	return st, true, checks, errs
}

func allNil(errs []error) bool {
	for _, err := range errs {
		if err != nil {
			return false
		}
	}
	return true
}

// Ready returns nil when /ready would answer 200 now, else why not in one
// line: not serving yet, draining and no longer serving, or the failing
// checks. It runs the checks as /ready does (with CheckInterval, it reads
// their last run). A health service of another protocol answers by it, as
// pkg/grpcdrain's Check does, so that a grpc readiness probe and /ready
// agree.
func (s *Server) Ready(ctx context.Context) error {
	st, ok, checks, errs := s.evaluate(ctx)
	if !ok {
		return errors.New("not ready: " + st.String())
	}
	if !allNil(errs) {
		return errors.New(failedChecks(checks, errs))
	}
	return nil
}

// ReadyChanged returns the readiness last found (by /ready, Ready or the
// CheckInterval loop: false before the first) without running the
// checks, and a channel closed at its next change: a check failing or
// recovering, the drain's steps. Call it again for the change after.
func (s *Server) ReadyChanged() (ready bool, next <-chan struct{}) { return s.readiness.next() }

// servingState returns the state and whether /ready may answer 200 in it:
// Ready, or Draining before the pod is not ready for good.
func (s *Server) servingState() (State, bool) {
	st := s.State()
	return st, st == StateReady || (st == StateDraining && !s.readiness.isClosed())
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
