package health

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// role is what an HTTP listener of a Server is for.
type role int

const (
	roleMain  role = iota // the service's handler, with /ready and /live
	roleAPI               // another of the service's handlers (AddHTTP)
	roleAdmin             // probes and the caller's admin handler, never drained (AddAdmin)
)

// httpListener is one http.Server of a Server on its listener, with the
// connection tracking its drain needs.
type httpListener struct {
	srv     *Server
	role    role
	name    string // for the log: "http", "http:ADDR", "admin"
	hs      *http.Server
	ln      *closeOnceListener // nil until it listens
	conns   *conns
	handler http.Handler // the caller's
	// handlers running, hijacked ones included: Shutdown does not wait
	// for those, the drain does
	inflight atomic.Int64
	bodies   h2Bodies               // HTTP/2 request bodies being read
	step     atomic.Pointer[string] // the drain step it is in, "" when drained
	// when its keep-alive connections were all closed (UnixNano), for the
	// drain's "connections" phase
	connsDone atomic.Int64
}

func newHTTPListener(s *Server, r role, hs *http.Server, h http.Handler) *httpListener {
	l := &httpListener{srv: s, role: r, hs: hs, conns: newConns(&s.draining), handler: h}
	userState := hs.ConnState
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		l.conns.connState(c, st)
		if userState != nil {
			userState(c, st)
		}
	}
	userContext := hs.ConnContext
	hs.ConnContext = func(ctx context.Context, c net.Conn) context.Context {
		ctx = l.conns.connContext(ctx, c)
		if userContext != nil {
			ctx = userContext(ctx, c)
		}
		return ctx
	}
	hs.Handler = l
	return l
}

// ServeHTTP tracks the request, marks it for the drain, and routes it:
// /ready and /live on the main and admin listeners, the rest to the
// caller's handler. During the drain every response of a drained listener
// carries Connection: close, which ends an HTTP/1 connection after the
// response and makes an HTTP/2 one send GOAWAY.
func (l *httpListener) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s := l.srv
	if l.role == roleAdmin {
		switch r.URL.Path {
		case "/ready":
			s.serveReady(w, r, true)
		case "/live":
			s.serveLive(w, r)
		default:
			l.handler.ServeHTTP(w, r)
		}
		return
	}
	l.inflight.Add(1)
	defer l.inflight.Add(-1)
	if r.ProtoMajor == 2 {
		l.conns.markH2(r.Context())
	}
	draining := s.draining.Load()
	if draining {
		w.Header().Set("Connection", "close")
	}
	if l.role == roleMain {
		// Probes are not traffic: the kubelet keeps probing through
		// the drain, and its requests say nothing of the endpoint lag.
		switch r.URL.Path {
		case "/ready":
			// With an admin listener, probe detail stays off the
			// port an Ingress may expose.
			s.serveReady(w, r, !s.hasAdmin())
			return
		case "/live":
			s.serveLive(w, r)
			return
		}
	}
	if draining {
		s.drained.Add(1)
		// Only a connection opened after the signal tells of the
		// endpoint lag: one opened before was routed before it, and a
		// client may reuse it, idle since, whenever it likes.
		if l.conns.openedAfter(r.Context(), s.drainStart) {
			s.lastRequest.Store(time.Now().UnixNano())
		}
	}
	defer l.watchBody(w, r)()
	l.handler.ServeHTTP(w, r)
}

// serve runs the http.Server on its listener, with TLS (and so HTTP/2) when
// its TLSConfig holds a certificate; it returns nil after the drain. (A
// TLSConfig without one, as x/net's http2.ConfigureServer leaves, means
// plain TCP.)
func (l *httpListener) serve() error {
	if c := l.hs.TLSConfig; c != nil && (len(c.Certificates) > 0 || c.GetCertificate != nil || c.GetConfigForClient != nil) {
		return serveErr(l.hs.ServeTLS(l.ln, "", "")) // certificates from TLSConfig
	}
	return serveErr(l.hs.Serve(l.ln))
}

// drain stops the listener's accepting, ends its connections without
// racing their clients and waits for its requests, hijacked handlers
// included. It returns ctx's error if the deadline came first.
func (l *httpListener) drain(ctx context.Context) error {
	s := l.srv
	l.setStep("closing connections") // kept when the deadline cuts it
	_ = l.ln.Close()                 // closeOnceListener: Shutdown closes it again without error
	s.log.Info("listener closed", "server", l.name, "elapsed", s.sinceDrain())

	if !l.closeConns(ctx) {
		return ctx.Err()
	}
	l.connsDone.Store(time.Now().UnixNano())
	s.log.Info("keep-alive connections closed", "server", l.name, "elapsed", s.sinceDrain())

	// Shutdown finds no HTTP/1 connection left: it sends HTTP/2 GOAWAY,
	// runs RegisterOnShutdown hooks and waits for HTTP/2 streams.
	l.setStep("http shutdown")
	if err := l.hs.Shutdown(ctx); err != nil {
		return err
	}
	l.setStep("long-lived handlers")
	if n := l.inflight.Load(); n > 0 {
		s.log.Info("waiting for long-lived handlers (hijacked connections)", "server", l.name, "handlers", n, "elapsed", s.sinceDrain())
	}
	for l.inflight.Load() > 0 {
		select {
		case <-time.After(5 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.log.Info("requests drained", "server", l.name, "elapsed", s.sinceDrain())
	l.setStep("")
	return nil
}

func (l *httpListener) setStep(step string) { l.step.Store(&step) }

// closeConns ends every HTTP/1 connection without racing its client and
// reports false if ctx ended first. A connection that carries a request
// ends by itself after its response (it has Connection: close); one that
// is idle is closed once it has been idle for IdleClose. A request still
// reading its body IdleClose from now is cut (body.go).
func (l *httpListener) closeConns(ctx context.Context) bool {
	s := l.srv
	bodyBound := l.bodies.cutFrom(s.cfg.IdleClose)
	poll := max(s.cfg.IdleClose/4, time.Millisecond)
	for {
		remaining, next := l.conns.closeQuiet(s.cfg.IdleClose, bodyBound)
		if remaining == 0 {
			return true
		}
		wait := poll
		if !next.IsZero() {
			wait = max(min(time.Until(next), poll), time.Millisecond)
		}
		select {
		case <-time.After(wait):
		case <-l.conns.changed:
		case <-ctx.Done():
			return false
		}
	}
}

// cut closes what is left of the listener at the deadline and returns what
// it cut.
func (l *httpListener) cut() (active, idle, h2, hijacked int) {
	active, idle, h2, _ = l.conns.counts()
	l.conns.cutting.Store(true) // their closes are counted here, not as after-response
	_ = l.hs.Close()            // the deadline passed; what is left is cut either way
	hijacked = l.conns.closeHijacked()
	l.conns.stats.cut.Add(int64(active + idle + h2 + hijacked))
	return active, idle, h2, hijacked
}

// closeOnceListener lets the drain close the listener before
// http.Server.Shutdown does, without Shutdown reporting the second Close.
type closeOnceListener struct {
	net.Listener
	once sync.Once
	err  error
}

func (l *closeOnceListener) Close() error {
	l.once.Do(func() { l.err = l.Listener.Close() })
	return l.err
}

// serveErr turns the error a Serve returns after the drain into nil.
func serveErr(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
