package health

import (
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
	if st, ok := s.servingState(); !ok {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+st.String()+"\n")
		return
	}
	checks, errs := s.checkErrors(r.Context())
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
	// A drain step that began while the checks ran wins.
	st, ok := s.servingState()
	if !ok {
		writeText(w, http.StatusServiceUnavailable, "not ready: "+st.String()+"\n")
		return
	}
	if s.cfg.CheckInterval == 0 {
		s.setCheckVerdict(!failed, checks, errs)
	}
	if st == Draining {
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

// servingState returns the state and whether /ready may answer 200 in it:
// Ready, or Draining before the pod is not ready for good.
func (s *Server) servingState() (State, bool) {
	st := s.State()
	return st, st == Ready || (st == Draining && !s.readiness.isClosed())
}

func oneLine(s string) string { return strings.ReplaceAll(s, "\n", " ") }
