// Package health runs a service's servers so that Kubernetes can stop it
// without losing a request or the background work a request started.
//
// A Server serves GET /ready and GET /live beside the service's own handler,
// and drains with it any number of other HTTP listeners (AddHTTP), an admin
// listener that answers until the end (AddAdmin) and other components such
// as a gRPC server or a queue consumer (Add). On the first SIGTERM or SIGINT
// (or when Run's context is done) it drains, in the order that drain.go's
// drain.run walks, step by step:
//
//  1. The signal. Draining is closed and State turns Draining. With
//     ReadyWhileServing, the default, /ready keeps answering 200 and says
//     that the pod is draining, for as long as the listeners accept.
//     Kubernetes has already made the endpoint not ready, and it falls
//     back to terminating endpoints that still serve when a Service has
//     no ready one left. With NotReadyAtSignal, /ready turns 503 at once.
//  2. The delay. Serving goes on for DrainDelay while the endpoint
//     removal reaches every node. Responses carry Connection: close, so
//     keep-alive clients move on.
//  3. The servers stop. /ready turns 503 for good (NotReady is closed, and
//     a gRPC health service turns NOT_SERVING). Every listener and
//     component stops, side by side, and one that hangs holds none of the
//     others. A listener stops accepting. It closes each keep-alive
//     connection once it has been idle for IdleClose, never one a client
//     may be writing to. It cuts a request whose body is still arriving
//     IdleClose later. http.Server.Shutdown sends HTTP/2 GOAWAY and
//     finishes. A component's Shutdown is called. The long-lived requests
//     (LongLived) are asked to leave one at a time, over LeaveWindow.
//  4. The background work started with TryGo finishes.
//  5. The OnStop hooks run, in reverse order.
//  6. The liveness marker is removed. Run closes the admin listener and
//     returns nil.
//
// ShutdownTimeout, counted from the first signal, bounds it all. When it
// expires, what is left is closed, the work still running is cancelled
// and counted, the hooks run until the deadline, and Run returns an error
// matching ErrShutdownTimeout. A second signal makes Run return
// ErrInterrupted at once. The drain stops where it is, every listener and
// connection is closed, the components' and the work's contexts are
// cancelled, and the work still running is counted as abandoned. ExitCode
// maps each ending to a stable exit status.
package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drainwell/drainwell/internal/marker"
)

// Errors returned by Run and Serve.
var (
	// ErrInterrupted: a second signal arrived during the drain.
	ErrInterrupted = errors.New("interrupted by a second signal")
	// ErrShutdownTimeout: the drain did not finish within ShutdownTimeout.
	ErrShutdownTimeout = errors.New("shutdown timeout expired")
	// ErrServerStopped: a listener or component stopped serving before
	// the drain, which it then started.
	ErrServerStopped = errors.New("stopped serving before the drain")
	// ErrRunTwice: Run or Serve was called again on a Server; a Server
	// runs once.
	ErrRunTwice = errors.New("health: a Server runs once")
)

// ErrUsage marks bad configuration: ExitCode maps it to 2. The Server's
// and healthenv's configuration errors match it; wrap a service's own
// with it (fmt.Errorf("%w: GRPC_ADDR is not set", health.ErrUsage)). It
// is probe.ErrUsage.
var ErrUsage = marker.ErrUsage

// NoDrainDelay, as Config.DrainDelay, drains with no delay at all (any
// negative value does).
const NoDrainDelay time.Duration = -1

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
	// Addr is where Run listens for New's handler, /ready and /live.
	// Default ":8080"; with neither a handler nor HTTP set (a service
	// whose API is gRPC or a queue), no such listener opens unless Addr
	// is set.
	Addr string
	// DrainDelay is how long the server keeps serving after the signal,
	// while the endpoint removal propagates. Zero takes the default, 5s;
	// NoDrainDelay means none (unsafe: requests routed by stale rules are
	// refused).
	DrainDelay time.Duration
	// ShutdownTimeout bounds the whole drain, counted from the first
	// signal. Keep it below the pod's terminationGracePeriodSeconds.
	// Default 25s.
	ShutdownTimeout time.Duration
	// IdleClose is the drain's patience with a client that sends
	// nothing. A keep-alive connection must have been idle this long
	// before the drain closes it. A request body still arriving when its
	// listener closes (or first read later) may take this long. Then the
	// request is cut: its HTTP/1 connection is closed, or its HTTP/2
	// stream reset (Stats.RequestsCutInBody). Default 1s.
	IdleClose time.Duration
	// CheckTimeout bounds each readiness check. Default 1s.
	CheckTimeout time.Duration
	// CheckInterval, when positive, runs the readiness checks in the
	// background every interval, and /ready answers their last result:
	// frequent probes and load-balancer checks then do not each hit a
	// dependency. Zero runs them on every /ready.
	CheckInterval time.Duration
	// OnReadyChange, when set, is called on every change of what /ready
	// answers: ready, not ready (with the failing checks), draining. It
	// runs on the goroutine that noticed the change and must not block.
	// The Server logs each change itself ("readiness changed").
	OnReadyChange func(ready bool, reason string)

	// LiveFile, when set, is the liveness marker's path: created before
	// the server listens, refreshed while it runs, removed after the
	// drain (`live` checks it: probe.Command). LiveMaxAge is the age at
	// which `live` calls it stale (0: existence only); the marker is
	// refreshed every probe.HeartbeatInterval(LiveMaxAge). Both as
	// LIVE_FILE and LIVE_MAX_AGE say (probe.LoadLiveConfig).
	LiveFile   string
	LiveMaxAge time.Duration
	// Healthy, when set, is asked before each heartbeat: while it returns
	// false the marker is not refreshed, goes stale, and the liveness
	// probe fails. Make it check what a wedge would stop (a worker loop's
	// progress, a lock that must stay free); it must not block.
	Healthy func() bool

	// LeaveWindow is how long the drain takes to ask the long-lived
	// requests (LongLived) to leave, one at a time, once the drain delay
	// is over. Their clients then reconnect elsewhere at n/LeaveWindow per
	// second at most, for n requests. The drain's steps end a tenth of
	// ShutdownTimeout (at most 1s) before it, to leave time for the hooks.
	// Zero takes half the time left until then, at the end of the delay:
	// 9.5s with the defaults. NoLeaveWindow asks them all at once.
	// DrainDelay plus LeaveWindow must fit before that end.
	LeaveWindow time.Duration

	// DrainReadiness is what /ready answers from the signal on: the
	// default ReadyWhileServing, or NotReadyAtSignal.
	DrainReadiness ReadinessPolicy

	// Signals start the drain (a second one ends it at once). Default
	// SIGTERM and SIGINT. Add SIGHUP, say, for a preStop hook that sends
	// it, or the signal of a container's lifecycle.stopSignal. A signal
	// not listed keeps Go's default: SIGHUP ends the process at once,
	// without a drain (answered work lost, the marker left behind);
	// SIGQUIT dumps the goroutines and exits 2; SIGUSR1, SIGUSR2 and the
	// rest are ignored, so a stopSignal among them leaves the process
	// running until SIGKILL. (A test ends Run by cancelling its context,
	// which starts the drain as the first signal does.)
	Signals []os.Signal

	// HTTP, when set, is the http.Server to use, for its timeouts,
	// protocols and TLS: with a TLSConfig that holds a certificate (or
	// GetCertificate) it serves HTTPS and HTTP/2. Its Addr serves as
	// Addr, and its Handler as New's handler (setting both, or two
	// different addresses, is an error Run returns); its ConnState and
	// ConnContext are called after the drain's own. By default
	// ReadHeaderTimeout is 10s and IdleTimeout 120s.
	HTTP *http.Server

	Logger *slog.Logger // default slog.Default()
}

// State is where a Server is in its life.
type State int32

// The states, in order.
const (
	StateStarting State = iota
	StateReady
	StateDraining
	StateStopped
)

// String returns the state's name, as /ready reports it.
func (s State) String() string {
	switch s {
	case StateStarting:
		return "starting"
	case StateReady:
		return "ready"
	case StateDraining:
		return "draining"
	case StateStopped:
		return "stopped"
	}
	return fmt.Sprintf("State(%d)", int32(s))
}

// Server is a service's servers with readiness, liveness and one drain.
// Create it with New, add listeners, components, checks, hooks and work,
// then call Run once.
type Server struct {
	cfg       Config
	configErr error // what New found wrong, returned by Run
	log       *slog.Logger
	signals   <-chan os.Signal // nil: the process's Config.Signals
	tasks     *tasks
	longLived longLived
	marker    *marker.Marker // Config.LiveFile's, or nil

	main  *httpListener   // New's handler, with /ready and /live
	apis  []*httpListener // AddHTTP
	admin *httpListener   // AddAdmin, or nil
	comps []*component    // Add

	state        atomic.Int32
	draining     atomic.Bool
	drainingDone chan struct{} // closed when the drain begins
	drainStart   time.Time     // set before drainingDone is closed
	// requests begun after the signal, for the drain's log, and when the
	// last one began (UnixNano)
	drained     atomic.Int64
	lastRequest atomic.Int64
	report      drainReport
	readiness   *readiness

	mu         sync.Mutex
	checks     []check
	results    []checkResult // the checks' last run, when as many as checks
	onDemand   *checkRun     // the on-demand run in progress, which /ready calls share
	stops      []func(context.Context) error
	addr       net.Addr
	started    bool // Run was called: nothing more can be added
	hooksTaken bool // the OnStop hooks have started: no more are added

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
	// running while a call of fn has not returned: one that ignored its
	// context past CheckTimeout is not called again until it does
	running *atomic.Bool
}

// New returns a Server whose main listener (Config.Addr) sends every
// request but /ready and /live to h. With h nil and neither Config.Addr
// nor Config.HTTP set, there is no main listener: a gRPC-only service or
// a worker, probed by gRPC health (pkg/grpcdrain), an admin listener
// (AddAdmin) or `live`; with h nil and an address, it answers 404 but for
// /ready and /live.
func New(cfg Config, h http.Handler) *Server {
	return newServer(cfg, h, nil)
}

// newServer is New with, when sigs is not nil, its signals: the drain's
// own tests send them (and run in a testing/synctest bubble, whose clock
// drives the drain's timers).
func newServer(cfg Config, h http.Handler, sigs <-chan os.Signal) *Server {
	var configErr error
	if cfg.HTTP != nil && cfg.HTTP.Handler != nil {
		if h != nil {
			configErr = errors.Join(configErr, fmt.Errorf("%w: Config.HTTP.Handler and New's handler are both set", marker.ErrUsage))
		}
		h = cfg.HTTP.Handler
	}
	if cfg.HTTP != nil && cfg.HTTP.Addr != "" {
		if cfg.Addr != "" && cfg.Addr != cfg.HTTP.Addr {
			configErr = errors.Join(configErr, fmt.Errorf("%w: Config.Addr %q and Config.HTTP.Addr %q differ", marker.ErrUsage, cfg.Addr, cfg.HTTP.Addr))
		}
		cfg.Addr = cfg.HTTP.Addr
	}
	addrSet := cfg.Addr != ""
	cfg = cfg.withDefaults()
	if err := shadowed(h); err != nil {
		configErr = errors.Join(configErr, err)
	}
	s := &Server{
		cfg:          cfg,
		configErr:    configErr,
		log:          cfg.Logger,
		signals:      sigs,
		tasks:        newTasks(cfg.Logger),
		drainingDone: make(chan struct{}),
	}
	if cfg.LiveFile != "" {
		s.marker = &marker.Marker{Path: cfg.LiveFile}
	}
	s.readiness = newReadiness(func(ready bool, reason string) {
		s.log.Info("readiness changed", "ready", ready, "reason", reason)
		if cfg.OnReadyChange != nil {
			cfg.OnReadyChange(ready, reason)
		}
	})
	if h == nil && cfg.HTTP == nil && !addrSet {
		return s // no main listener: the service serves no HTTP of its own
	}
	if h == nil {
		h = http.NotFoundHandler()
	}
	s.main = newHTTPListener(s, roleMain, defaultHTTP(cfg.HTTP), h)
	s.main.name = "http"
	return s
}

// shadowed reports a route of h, when h is an http.ServeMux, that the main
// listener's /ready or /live would hide: the Server answers those paths
// itself. (A handler of another kind cannot be asked.)
func shadowed(h http.Handler) error {
	mux, ok := h.(*http.ServeMux)
	if !ok {
		return nil
	}
	for _, path := range []string{"/ready", "/live"} {
		r := &http.Request{Method: http.MethodGet, URL: &url.URL{Path: path}, Host: "localhost"}
		if _, pattern := mux.Handler(r); strings.HasSuffix(pattern, path) {
			return fmt.Errorf("%w: the handler routes %q, which the Server answers itself on its main listener: serve it under another path", marker.ErrUsage, pattern)
		}
	}
	return nil
}

// defaultHTTP returns hs, or an http.Server with New's default timeouts.
func defaultHTTP(hs *http.Server) *http.Server {
	if hs != nil {
		return hs
	}
	return &http.Server{ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
}

// withDefaults returns c with every zero field at its default (a negative
// DrainDelay, none, stays as it is: withDefaults is idempotent).
func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.DrainDelay == 0 {
		c.DrainDelay = DefaultDrainDelay // negative stays: none
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.IdleClose == 0 {
		c.IdleClose = DefaultIdleClose
	}
	if c.CheckTimeout == 0 {
		c.CheckTimeout = DefaultCheckTimeout
	}
	if len(c.Signals) == 0 {
		c.Signals = []os.Signal{syscall.SIGTERM, os.Interrupt}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports a configuration that cannot drain safely, naming the
// field, as New would use it: zero fields at their defaults (the zero
// Config is valid). Run and Serve call it first; its errors match
// probe.ErrUsage.
func (c Config) Validate() error {
	c = c.withDefaults()
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{marker.ErrUsage}, args...)...)
	}
	switch {
	case c.ShutdownTimeout < 0:
		return bad("Config.ShutdownTimeout %s is negative", c.ShutdownTimeout)
	case c.DrainDelay >= c.ShutdownTimeout:
		return bad("Config.DrainDelay %s must be below Config.ShutdownTimeout %s", c.DrainDelay, c.ShutdownTimeout)
	case c.IdleClose < 0:
		return bad("Config.IdleClose %s is negative", c.IdleClose)
	case c.DrainDelay+c.IdleClose >= c.ShutdownTimeout:
		return bad("Config.DrainDelay %s plus Config.IdleClose %s must be below Config.ShutdownTimeout %s", c.DrainDelay, c.IdleClose, c.ShutdownTimeout)
	case c.CheckTimeout < 0:
		return bad("Config.CheckTimeout %s is negative", c.CheckTimeout)
	case c.CheckInterval < 0:
		return bad("Config.CheckInterval %s is negative", c.CheckInterval)
	case c.DrainReadiness != ReadyWhileServing && c.DrainReadiness != NotReadyAtSignal:
		return bad("Config.DrainReadiness %s is unknown", c.DrainReadiness)
	case c.LiveMaxAge < 0:
		return bad("Config.LiveMaxAge %s is negative", c.LiveMaxAge)
	case c.LeaveWindow > 0 && max(c.DrainDelay, 0)+c.LeaveWindow >= c.ShutdownTimeout-expireReserve(c.ShutdownTimeout):
		return bad("Config.DrainDelay %s plus Config.LeaveWindow %s must be below Config.ShutdownTimeout %s less %s, or the last long-lived requests are cut",
			max(c.DrainDelay, 0), c.LeaveWindow, c.ShutdownTimeout, expireReserve(c.ShutdownTimeout))
	}
	return nil
}

// AddHTTP adds another HTTP server of the service, serving hs.Handler on
// ln (or, when ln is nil, on hs.Addr once Run starts). It drains as the
// main listener does (Connection: close during the delay, keep-alive
// connections closed without racing their clients, HTTP/2 GOAWAY, hijacked
// handlers awaited), side by side with it. It does not serve /ready or
// /live. A nil hs takes New's default timeouts, a nil hs.Handler answers
// 404 (never http.DefaultServeMux, where imports register handlers such
// as pprof's), as New's and AddAdmin's do. hs's ConnState and ConnContext
// are called after the drain's own. Call it before Run.
func (s *Server) AddHTTP(hs *http.Server, ln net.Listener) {
	hs = defaultHTTP(hs)
	h := hs.Handler
	if h == nil {
		h = http.NotFoundHandler()
	}
	l := newHTTPListener(s, roleAPI, hs, h)
	l.name = "http:" + hs.Addr
	if ln != nil {
		l.name = "http:" + ln.Addr().String()
		l.ln = &closeOnceListener{Listener: ln}
	}
	s.add(func() { s.apis = append(s.apis, l) })
}

// AddAdmin adds the admin listener: /ready (with ?verbose detail, which the
// main listener then no longer shows) and /live, and hs.Handler (when not
// nil) for every other path, such as /metrics. It serves on ln (or, when
// ln is nil, on hs.Addr; hs nil takes New's default timeouts) and is not
// drained: it answers until Run returns, so probes and scrapes see the
// drain to its end. Call it once, before Run.
func (s *Server) AddAdmin(hs *http.Server, ln net.Listener) {
	hs = defaultHTTP(hs)
	h := hs.Handler
	if h == nil {
		h = http.NotFoundHandler()
	}
	l := newHTTPListener(s, roleAdmin, hs, h)
	l.name = "admin"
	if ln != nil {
		l.ln = &closeOnceListener{Listener: ln}
	}
	s.add(func() {
		if s.admin != nil {
			panic("health: AddAdmin called twice")
		}
		s.admin = l
	})
}

// Add adds a component that runs and drains with the Server, under name in
// the log. Call it before Run.
func (s *Server) Add(name string, c Component) {
	s.add(func() { s.comps = append(s.comps, &component{name: name, c: c, done: make(chan struct{})}) })
}

func (s *Server) add(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		panic("health: a listener or component added after Run")
	}
	f()
}

func (s *Server) hasAdmin() bool { return s.admin != nil } // fixed once Run starts

// AddCheck adds a named readiness check. /ready answers 200 only when every
// check returns nil within the check timeout. A dependency that is down
// makes the pod not ready, never dead: /live does not run checks.
func (s *Server) AddCheck(name string, fn func(ctx context.Context) error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.checks = append(s.checks, check{name, fn, new(atomic.Bool)})
}

// OnStop adds a cleanup hook, such as closing a database client. Hooks run
// after the background work has drained, in reverse order of registration,
// with a context that ends at the shutdown deadline. A hook may be added
// while the Server runs; once the hooks have started, OnStop returns
// ErrTooLate and fn never runs.
func (s *Server) OnStop(fn func(ctx context.Context) error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.hooksTaken {
		return ErrTooLate
	}
	s.stops = append(s.stops, fn)
	return nil
}

// TryGo runs f in a new goroutine as tracked background work: the drain
// waits for it before running the OnStop hooks. A handler (HTTP or gRPC)
// calls TryGo before it returns. f's context is cancelled only at the
// shutdown deadline, never at the signal. Once the drain has stopped
// waiting for work, TryGo returns ErrTooLate and does not run f: check its
// error (a handler answers 503). A panic in f is recovered and logged.
func (s *Server) TryGo(f func(ctx context.Context)) error { return s.tasks.goTask(f) }

// Draining returns a channel that is closed when the drain begins. A
// streaming response or a WebSocket should rather use LongLived: its turn
// to leave comes after the drain delay, spread over LeaveWindow, where
// Draining closes for every handler at once, while stale routes still
// bring new requests.
func (s *Server) Draining() <-chan struct{} { return s.drainingDone }

// NotReady returns a channel that is closed when /ready turns 503 for
// good: at the signal with NotReadyAtSignal; with ReadyWhileServing when
// the drained listeners stop accepting, after the drain delay. A health
// service of another protocol (pkg/grpcdrain's) turns NOT_SERVING then.
func (s *Server) NotReady() <-chan struct{} { return s.readiness.closed }

// Logger returns the logger the Server logs to (Config.Logger, or
// slog.Default()), for a component that logs beside it.
func (s *Server) Logger() *slog.Logger { return s.log }

// State returns the server's current state.
func (s *Server) State() State { return State(s.state.Load()) }

// Addr returns the address the main listener listens on, or nil before it
// does (or when there is none: see New).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

func (s *Server) setState(st State) { s.state.Store(int32(st)) }

// Run creates the marker, listens on Config.Addr and serves, with every
// added listener and component, until the first signal or until ctx is
// done, then drains and returns: nil after a clean drain, an error matching
// ErrInterrupted or ErrShutdownTimeout otherwise, joined with the errors of
// components and hooks. Errors in the configuration or the marker's path
// match probe.ErrUsage and are returned before the server listens.
func (s *Server) Run(ctx context.Context) error {
	return s.run(ctx, nil)
}

// Serve is Run with the main listener a caller's.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	return s.run(ctx, ln)
}

// drained listeners and the admin one, in start order.
func (s *Server) listeners() []*httpListener {
	ls := s.drainedListeners()
	if s.admin != nil {
		ls = append(ls, s.admin)
	}
	return ls
}

// drainedListeners are the listeners the drain closes: the main one and
// AddHTTP's (the admin listener answers to the end).
func (s *Server) drainedListeners() []*httpListener {
	if s.main == nil {
		return append([]*httpListener(nil), s.apis...)
	}
	return append([]*httpListener{s.main}, s.apis...)
}

// listen opens every listener that has none yet.
func (s *Server) listen(mainLn net.Listener) error {
	if mainLn != nil {
		if s.main == nil { // Serve names the main listener: it serves /ready and /live
			s.main = newHTTPListener(s, roleMain, defaultHTTP(nil), http.NotFoundHandler())
			s.main.name = "http"
		}
		s.main.ln = &closeOnceListener{Listener: mainLn}
	}
	for _, l := range s.listeners() {
		if l.ln != nil {
			continue
		}
		addr := l.hs.Addr
		if l == s.main {
			addr = s.cfg.Addr
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return fmt.Errorf("%s: listen: %w", l.name, err)
		}
		l.ln = &closeOnceListener{Listener: ln}
	}
	return nil
}

// closeListeners closes every open listener (before serving: a failed start).
func (s *Server) closeListeners() {
	for _, l := range s.listeners() {
		if l.ln != nil {
			_ = l.ln.Close() // nothing served on it yet
		}
	}
}

// exit is a listener or component that stopped serving.
type exit struct {
	name string
	err  error
	comp *component // nil for a listener
}

func (s *Server) run(ctx context.Context, mainLn net.Listener) error {
	s.mu.Lock()
	again := s.started
	s.started = true
	s.mu.Unlock()
	if again {
		return ErrRunTwice
	}
	if err := errors.Join(s.configErr, s.cfg.Validate()); err != nil {
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
	if err := s.listen(mainLn); err != nil {
		s.closeListeners()
		return errors.Join(err, s.stopMarker())
	}
	if s.main != nil {
		s.mu.Lock()
		s.addr = s.main.ln.Addr()
		s.mu.Unlock()
	}

	// Every listener and component reports here when it stops serving;
	// before the drain that is a failure that starts it.
	exits := make(chan exit, len(s.apis)+len(s.comps)+2)
	for _, l := range s.listeners() {
		go func() { exits <- exit{name: l.name, err: l.serve()} }()
	}
	if s.admin != nil {
		defer s.admin.hs.Close() // after the drain: the admin answers to the end
	}
	runCtx, cancelRun := context.WithCancel(context.Background())
	defer cancelRun()
	for _, c := range s.comps {
		go func() {
			c.run(runCtx)
			exits <- exit{c.name, c.runErr, c}
		}()
	}
	s.setState(StateReady)
	// After Ready: a verdict reached while Starting would not be reported.
	checksCtx, stopChecks := context.WithCancel(context.Background())
	defer stopChecks()
	if s.cfg.CheckInterval > 0 {
		go s.checkLoop(checksCtx)
	}
	s.log.Info("serving", s.servingAttrs()...)

	var cause string
	var failure error
	select {
	case <-ctx.Done():
		cause = "context done"
	case sig := <-sigs:
		cause = sig.String()
	case e := <-exits:
		if e.comp != nil {
			e.comp.reported = true
		}
		cause = e.name + " stopped"
		failure = fmt.Errorf("%s %w: %w", e.name, ErrServerStopped, orStopped(e.err))
		s.log.Error("stopped serving before the drain", "server", e.name, "error", e.err)
	}
	d := &drain{s: s, cause: cause, sigs: sigs, stopRun: cancelRun}
	return errors.Join(failure, d.run())
}

func orStopped(err error) error {
	if err == nil {
		return errors.New("returned")
	}
	return err
}

// servingAttrs lists every address served, for the "serving" log line:
// the listeners', and a component's when it has an Addr method (as
// pkg/grpcdrain's has). Whether the pod is ready is /ready's to say.
func (s *Server) servingAttrs() []any {
	var attrs []any
	if s.main != nil {
		attrs = append(attrs, "addr", s.main.ln.Addr().String())
	}
	for _, l := range s.apis {
		attrs = append(attrs, "http_addr", l.ln.Addr().String())
	}
	if s.admin != nil {
		attrs = append(attrs, "admin_addr", s.admin.ln.Addr().String())
	}
	for _, c := range s.comps {
		if a, ok := c.c.(interface{ Addr() net.Addr }); ok && a.Addr() != nil {
			attrs = append(attrs, c.name+"_addr", a.Addr().String())
			continue
		}
		attrs = append(attrs, "component", c.name)
	}
	return attrs
}

// beginDrain tells whoever watches Draining, and turns the server not
// ready when its policy says so.
func (s *Server) beginDrain() {
	s.drainStart = time.Now()
	s.report.mark = s.drainStart
	s.draining.Store(true)
	s.setState(StateDraining)
	close(s.drainingDone)
	if s.cfg.DrainReadiness == NotReadyAtSignal {
		s.readiness.close()
		return
	}
	s.readiness.draining()
}

func (s *Server) sinceDrain() time.Duration { return time.Since(s.drainStart) }

// startMarker creates the marker and starts its heartbeat.
func (s *Server) startMarker() error {
	m := s.marker
	if m == nil {
		return nil
	}
	if err := m.Create(); err != nil {
		return fmt.Errorf("%w: Config.LiveFile %s: %v", marker.ErrUsage, m.Path, err)
	}
	interval := marker.HeartbeatInterval(s.cfg.LiveMaxAge)
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
		m := s.marker
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
