// Package health runs an HTTP service so that Kubernetes can stop it without
// losing a request or the background work a request started.
//
// A Server serves GET /ready and GET /live beside the service's own handler.
// On the first SIGTERM or SIGINT (or when Run's context is done) it drains:
//
//  1. /ready turns 503 at once, so the kubelet takes the pod out of the
//     Service's endpoints;
//  2. it keeps serving for DrainDelay while that removal reaches every
//     node, answering with Connection: close so keep-alive clients move on;
//  3. it stops accepting, closes each keep-alive connection once it has
//     been idle for IdleClose (never one a client may be writing to), and
//     lets http.Server.Shutdown send HTTP/2 GOAWAY and finish;
//  4. it waits for the background work started with Go;
//  5. it runs the OnStop hooks in reverse order, removes the liveness
//     marker and returns nil.
//
// ShutdownTimeout, counted from the first signal, bounds it all: on expiry
// what is left is closed, the work still running is cancelled and counted,
// and Run returns an error matching ErrShutdownTimeout. A second signal makes
// Run return ErrInterrupted at once.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drainwell/drainwell/pkg/probe"
)

// Errors returned by Run and Serve.
var (
	// ErrInterrupted: a second signal arrived during the drain.
	ErrInterrupted = errors.New("interrupted by a second signal")
	// ErrShutdownTimeout: the drain did not finish within ShutdownTimeout.
	ErrShutdownTimeout = errors.New("shutdown timeout expired")
)

// Defaults applied by New to a zero field of Config.
const (
	DefaultAddr            = ":8080"
	DefaultDrainDelay      = 5 * time.Second
	DefaultShutdownTimeout = 25 * time.Second
	DefaultIdleClose       = time.Second
	DefaultCheckTimeout    = time.Second
)

// Config says how a Server serves and drains. The zero value is usable and
// safe: every zero duration takes its default.
type Config struct {
	// Addr is where Run listens. Default ":8080".
	Addr string
	// DrainDelay is how long the server keeps serving after the signal,
	// while the endpoint removal propagates. Default 5s; a negative value
	// means no delay (unsafe: requests routed by stale rules are refused).
	DrainDelay time.Duration
	// ShutdownTimeout bounds the whole drain, counted from the first
	// signal. Keep it below the pod's terminationGracePeriodSeconds.
	// Default 25s.
	ShutdownTimeout time.Duration
	// IdleClose is how long a keep-alive connection must have been idle
	// before the drain closes it. Default 1s.
	IdleClose time.Duration
	// CheckTimeout bounds each readiness check. Default 1s.
	CheckTimeout time.Duration

	// Marker, when set, is created before the server listens, refreshed
	// every HeartbeatInterval(MarkerMaxAge) while it runs, and removed
	// after the drain.
	Marker       *probe.Marker
	MarkerMaxAge time.Duration
	// Healthy, when set, is asked before each heartbeat: while it returns
	// false the marker is not refreshed, goes stale, and the liveness
	// probe fails. Make it check what a wedge would stop (a worker loop's
	// progress, a lock that must stay free); it must not block.
	Healthy func() bool

	// Signals start the drain. Default SIGTERM and SIGINT. Add SIGHUP, say,
	// for a preStop hook that sends it. (A test ends Run by cancelling its
	// context, which starts the drain as the first signal does.)
	Signals []os.Signal

	// HTTP, when set, is the http.Server to use, for its timeouts and
	// TLS settings. Its Handler and ConnContext are replaced and its
	// ConnState is wrapped. By default ReadHeaderTimeout is 10s and
	// IdleTimeout 120s.
	HTTP *http.Server

	Logger *slog.Logger // default slog.Default()
}

// State is where a Server is in its life.
type State int32

// The states, in order.
const (
	Starting State = iota
	Ready
	Draining
	Stopped
)

// String returns the state's name, as /ready reports it.
func (s State) String() string {
	switch s {
	case Starting:
		return "starting"
	case Ready:
		return "ready"
	case Draining:
		return "draining"
	case Stopped:
		return "stopped"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Server is an HTTP service with readiness, liveness and a drain. Create
// it with New, add checks, hooks and work, then call Run once.
type Server struct {
	cfg     Config
	log     *slog.Logger
	clock   clock
	signals <-chan os.Signal // nil: the process's Config.Signals
	handler http.Handler
	http    *http.Server
	conns   *conns
	tasks   *tasks

	state        atomic.Int32
	draining     atomic.Bool
	drainingDone chan struct{} // closed when the drain begins
	// requests begun after the signal, for the drain's log
	drained atomic.Int64
	// handlers running, hijacked ones included: Shutdown does not wait
	// for those, the drain does
	inflight atomic.Int64

	mu     sync.Mutex
	checks []check
	stops  []func(context.Context) error
	addr   net.Addr

	heartbeatStop context.CancelFunc
	heartbeatDone chan struct{}
	markerOnce    sync.Once
	markerErr     error
	stopOnce      sync.Once
	stopErr       error
}

type check struct {
	name string
	fn   func(context.Context) error
}

// New returns a Server that sends every request but /ready and /live to h.
func New(cfg Config, h http.Handler) *Server {
	return newServer(cfg, h, realClock{}, nil)
}

// newServer is New with the drain's time source and, when sigs is not nil,
// its signals: the drain's own tests drive both.
func newServer(cfg Config, h http.Handler, clk clock, sigs <-chan os.Signal) *Server {
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.DrainDelay == 0 {
		cfg.DrainDelay = DefaultDrainDelay
	}
	if cfg.DrainDelay < 0 {
		cfg.DrainDelay = 0
	}
	if cfg.ShutdownTimeout == 0 {
		cfg.ShutdownTimeout = DefaultShutdownTimeout
	}
	if cfg.IdleClose == 0 {
		cfg.IdleClose = DefaultIdleClose
	}
	if cfg.CheckTimeout == 0 {
		cfg.CheckTimeout = DefaultCheckTimeout
	}
	if len(cfg.Signals) == 0 {
		cfg.Signals = []os.Signal{syscall.SIGTERM, os.Interrupt}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	hs := cfg.HTTP
	if hs == nil {
		hs = &http.Server{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		clock:   clk,
		signals: sigs,
		handler: h,
		http:    hs,
		conns:   newConns(clk),
		tasks:   newTasks(cfg.Logger),

		drainingDone: make(chan struct{}),
	}
	userState := hs.ConnState
	hs.ConnState = func(c net.Conn, st http.ConnState) {
		s.conns.connState(c, st)
		if userState != nil {
			userState(c, st)
		}
	}
	hs.ConnContext = s.conns.connContext
	hs.Handler = http.HandlerFunc(s.serveHTTP)
	return s
}

// Validate reports a configuration that cannot drain safely, naming the
// setting. Run and Serve call it first; its errors match probe.ErrUsage.
func (c Config) Validate() error {
	switch {
	case c.ShutdownTimeout < 0:
		return fmt.Errorf("%w: SHUTDOWN_TIMEOUT=%s is negative", probe.ErrUsage, c.ShutdownTimeout)
	case c.DrainDelay >= c.ShutdownTimeout:
		return fmt.Errorf("%w: DRAIN_DELAY=%s must be below SHUTDOWN_TIMEOUT=%s", probe.ErrUsage, c.DrainDelay, c.ShutdownTimeout)
	case c.IdleClose < 0:
		return fmt.Errorf("%w: IDLE_CLOSE=%s is negative", probe.ErrUsage, c.IdleClose)
	case c.DrainDelay+c.IdleClose >= c.ShutdownTimeout:
		return fmt.Errorf("%w: IDLE_CLOSE=%s exceeds what SHUTDOWN_TIMEOUT=%s leaves after DRAIN_DELAY=%s", probe.ErrUsage, c.IdleClose, c.ShutdownTimeout, c.DrainDelay)
	case c.CheckTimeout < 0:
		return fmt.Errorf("%w: check timeout %s is negative", probe.ErrUsage, c.CheckTimeout)
	case c.MarkerMaxAge < 0:
		return fmt.Errorf("%w: LIVE_MAX_AGE=%s is negative", probe.ErrUsage, c.MarkerMaxAge)
	}
	return nil
}

// AddCheck adds a named readiness check. /ready answers 200 only when every
// check returns nil within the check timeout. A dependency that is down
// makes the pod not ready, never dead: /live does not run checks.
func (s *Server) AddCheck(name string, fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, check{name, fn})
}

// OnStop adds a cleanup hook, such as closing a database client. Hooks run
// after the background work has drained, in reverse order of registration,
// with a context that ends at the shutdown deadline.
func (s *Server) OnStop(fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stops = append(s.stops, fn)
}

// Go runs f in a new goroutine as tracked background work: the drain waits
// for it before running the OnStop hooks. A handler calls Go before it
// returns. f's context is cancelled only at the shutdown deadline, never at
// the signal. Go returns ErrStopped, and does not run f, once the drain has
// stopped waiting for work. A panic in f is recovered and logged.
func (s *Server) Go(f func(ctx context.Context)) error { return s.tasks.goTask(f) }

// Draining returns a channel that is closed when the drain begins: a
// streaming response or a hijacked connection (a websocket) should finish
// then, as the drain closes such connections only at the deadline.
func (s *Server) Draining() <-chan struct{} { return s.drainingDone }

// State returns the server's current state.
func (s *Server) State() State { return State(s.state.Load()) }

// Addr returns the address the server listens on, or nil before it does.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) setState(st State) { s.state.Store(int32(st)) }

// Run creates the marker, listens on Config.Addr and serves until the first
// signal or until ctx is done, then drains and returns: nil after a clean
// drain, an error matching ErrInterrupted or ErrShutdownTimeout otherwise.
// Errors in the configuration or the marker's path match probe.ErrUsage
// and are returned before the server listens.
func (s *Server) Run(ctx context.Context) error {
	return s.run(ctx, nil)
}

// Serve is Run on a listener of the caller's.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.run(ctx, ln)
}

func (s *Server) run(ctx context.Context, ln net.Listener) error {
	if err := s.cfg.Validate(); err != nil {
		return err
	}
	sigs := s.signals
	if sigs == nil {
		ch := make(chan os.Signal, 2)
		signal.Notify(ch, s.cfg.Signals...)
		defer signal.Stop(ch)
		sigs = ch
	}
	if err := s.startMarker(); err != nil {
		return err
	}
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", s.cfg.Addr); err != nil {
			return errors.Join(fmt.Errorf("listen: %w", err), s.stopMarker())
		}
	}
	l := &closeOnceListener{Listener: ln}
	s.mu.Lock()
	s.addr = ln.Addr()
	s.mu.Unlock()
	serveErr := make(chan error, 1)
	go func() { serveErr <- s.http.Serve(l) }()
	s.setState(Ready)
	s.log.Info("ready", "addr", ln.Addr().String())

	var cause string
	select {
	case <-ctx.Done():
		cause = "context done"
	case sig := <-sigs:
		cause = sig.String()
	case err := <-serveErr:
		s.setState(Stopped)
		_ = l.Close() // the serve error is the one to report
		return errors.Join(fmt.Errorf("serve: %w", err), s.stopMarker())
	}
	t0 := s.clock.Now()
	s.draining.Store(true)
	s.setState(Draining)
	close(s.drainingDone)
	active, idle, h2, _ := s.conns.counts()
	running, _ := s.tasks.counts()
	s.log.Info("signal received: not ready, draining", "signal", cause,
		"active_conns", active, "idle_conns", idle, "h2_conns", h2, "tasks_running", running,
		"drain_delay", s.cfg.DrainDelay, "shutdown_timeout", s.cfg.ShutdownTimeout)

	done := make(chan error, 1)
	go func() { done <- s.drain(t0, l) }()
	select {
	case err := <-done:
		return err
	case sig := <-sigs:
		s.log.Warn("second signal: exiting at once", "signal", sig.String(), "elapsed", s.since(t0))
		return errors.Join(fmt.Errorf("%w (%s)", ErrInterrupted, sig), s.stopMarker())
	}
}

func (s *Server) since(t0 time.Time) time.Duration { return s.clock.Now().Sub(t0) }

// drain runs the shutdown sequence that starts at t0.
func (s *Server) drain(t0 time.Time, l net.Listener) error {
	deadline := s.clock.After(s.cfg.ShutdownTimeout)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-deadline:
			cancel()
		case <-ctx.Done():
		}
	}()

	if d := s.cfg.DrainDelay; d > 0 {
		select {
		case <-s.clock.After(d):
		case <-ctx.Done():
			return s.expire(t0, "drain delay")
		}
	}
	s.log.Info("drain delay over", "elapsed", s.since(t0), "requests_during_delay", s.drained.Load())

	_ = l.Close() // closeOnceListener: Shutdown closes it again without error
	s.log.Info("listener closed", "elapsed", s.since(t0))

	if !s.closeConns(ctx) {
		return s.expire(t0, "closing connections")
	}
	s.log.Info("keep-alive connections closed", "elapsed", s.since(t0))

	// Shutdown finds no HTTP/1 connection left: it sends HTTP/2 GOAWAY,
	// runs RegisterOnShutdown hooks and waits for HTTP/2 streams.
	if err := s.http.Shutdown(ctx); err != nil {
		return s.expire(t0, "http shutdown")
	}
	if n := s.inflight.Load(); n > 0 {
		s.log.Info("waiting for long-lived handlers (hijacked connections)", "handlers", n, "elapsed", s.since(t0))
	}
	for s.inflight.Load() > 0 {
		select {
		case <-s.clock.After(5 * time.Millisecond):
		case <-ctx.Done():
			return s.expire(t0, "long-lived handlers")
		}
	}
	s.log.Info("requests drained", "elapsed", s.since(t0), "requests_after_signal", s.drained.Load())

	for !s.tasks.closeIfIdle() {
		select {
		case <-s.tasks.done:
		case <-ctx.Done():
			return s.expire(t0, "background work")
		}
	}
	_, started := s.tasks.counts()
	s.log.Info("background work drained", "elapsed", s.since(t0), "tasks_total", started)

	err := s.runStops(ctx)
	if ctx.Err() != nil {
		return s.expire(t0, "stop hooks")
	}
	s.log.Info("stop hooks done", "elapsed", s.since(t0))

	err = errors.Join(err, s.stopMarker())
	s.setState(Stopped)
	s.log.Info("drained, exiting", "elapsed", s.since(t0), "error", err)
	return err
}

// closeConns ends every HTTP/1 connection without racing its client and
// reports false if ctx ended first. A connection that carries a request
// ends by itself after its response (it has Connection: close); one that
// is idle is closed once it has been idle for IdleClose.
func (s *Server) closeConns(ctx context.Context) bool {
	poll := max(s.cfg.IdleClose/4, time.Millisecond)
	for {
		remaining, next := s.conns.closeQuiet(s.cfg.IdleClose)
		if remaining == 0 {
			return true
		}
		wait := poll
		if !next.IsZero() {
			wait = max(min(next.Sub(s.clock.Now()), poll), time.Millisecond)
		}
		select {
		case <-s.clock.After(wait):
		case <-s.conns.changed:
		case <-ctx.Done():
			return false
		}
	}
}

// expire ends a drain that ran out of time.
func (s *Server) expire(t0 time.Time, phase string) error {
	active, idle, h2, _ := s.conns.counts()
	_ = s.http.Close() // the deadline passed; what is left is cut either way
	hijacked := s.conns.closeHijacked()
	abandoned := s.tasks.abandon()
	s.log.Error("shutdown timeout: abandoning what is left", "phase", phase, "elapsed", s.since(t0),
		"tasks_abandoned", abandoned, "active_conns", active, "idle_conns", idle, "h2_conns", h2, "hijacked_conns", hijacked)
	// The hooks get a short bound of their own: the deadline has passed.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err := errors.Join(
		fmt.Errorf("%w after %s in phase %q: %d background tasks abandoned", ErrShutdownTimeout, s.since(t0).Round(time.Millisecond), phase, abandoned),
		s.runStops(ctx), s.stopMarker())
	s.setState(Stopped)
	return err
}

// runStops runs the OnStop hooks once, in reverse order.
func (s *Server) runStops(ctx context.Context) error {
	s.stopOnce.Do(func() {
		s.mu.Lock()
		stops := s.stops
		s.mu.Unlock()
		var errs []error
		for i := len(stops) - 1; i >= 0; i-- {
			if err := stops[i](ctx); err != nil {
				s.log.Error("stop hook failed", "error", err)
				errs = append(errs, err)
			}
		}
		s.stopErr = errors.Join(errs...)
	})
	return s.stopErr
}

// startMarker creates the marker and starts its heartbeat.
func (s *Server) startMarker() error {
	m := s.cfg.Marker
	if m == nil {
		return nil
	}
	if err := m.Create(); err != nil {
		return fmt.Errorf("%w: LIVE_FILE=%s: %v", probe.ErrUsage, m.Path, err)
	}
	interval := probe.HeartbeatInterval(s.cfg.MarkerMaxAge)
	if interval == 0 {
		return nil
	}
	ctx, stop := context.WithCancel(context.Background())
	s.heartbeatStop, s.heartbeatDone = stop, make(chan struct{})
	go func() {
		defer close(s.heartbeatDone)
		m.Heartbeat(ctx, interval, s.cfg.Healthy, func(err error) { s.log.Error("marker heartbeat failed", "error", err) })
	}()
	return nil
}

// stopMarker stops the heartbeat, then removes the marker, once.
func (s *Server) stopMarker() error {
	s.markerOnce.Do(func() {
		m := s.cfg.Marker
		if m == nil {
			return
		}
		if s.heartbeatStop != nil {
			s.heartbeatStop()
			<-s.heartbeatDone
		}
		s.markerErr = m.Remove()
		if s.markerErr != nil {
			s.log.Error("marker not removed", "path", m.Path, "error", s.markerErr)
			return
		}
		s.log.Info("marker removed", "path", m.Path)
	})
	return s.markerErr
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
