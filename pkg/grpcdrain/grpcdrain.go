// Package grpcdrain runs a gRPC server under a health.Server's drain, so
// that Kubernetes can stop it without failing an RPC.
//
// The standard health service (grpc.health.v1) follows the
// health.Server's readiness policy. When /ready turns 503 for good
// (health.Server.NotReady), it answers NOT_SERVING for every service name.
// That is after the drain delay by default, or at the signal with
// health.NotReadyAtSignal. The kubelet's grpc probe and client-side health
// checking see it. Each open Watch stream gets NOT_SERVING and then ends,
// so none holds the drain.
//
// The server keeps serving for the drain delay. Then GracefulStop sends
// GOAWAY and lets the RPCs in flight finish, side by side with the
// service's other servers. Once every handler in flight at the GOAWAY has
// returned, two kinds of client hold it no longer: one that has read
// nothing for a second (a zero HTTP/2 flow-control window, or an unread
// socket), and one that still opens streams a second after the GOAWAY (a
// rapid-reset loop). Their connections are cut, and the count is logged
// (conns_cut). Progress is the bytes the peer acknowledged (TCP_INFO), so
// this works on Linux and TCP listeners. At the shutdown deadline, Stop
// cuts what is left, and the count of RPCs cut is logged and returned.
// Background work a handler starts with health.Server.TryGo is awaited as
// for HTTP.
//
// A server-streaming or bidi RPC is a long-lived request of the drain
// (health.Server.LongLived). The drain asks such streams to leave one at a
// time, oldest first, over health.Config.LeaveWindow, once the delay is
// over. At its turn, the context of its stream ends. A handler that then
// returns ends its RPC with UNAVAILABLE, which clients retry elsewhere. A
// handler that ignores its context runs on until the deadline cuts it. The
// health service's Watch streams are not asked: the drain ends them
// itself. Unary and client-streaming RPCs finish as before.
//
// Each health status also follows the readiness checks. Check runs them as
// /ready does, so that a Kubernetes grpc readiness probe and an httpGet
// one agree. While one fails, Check answers NOT_SERVING for "" and every
// service, and Watch streams hear it. Every RPC but the health service's
// counts as a request in the drain report and the late-traffic warning
// (health.Server.NoteRequest).
//
//	gs := grpcdrain.New(srv, ln) // runs and drains with srv
//	pb.RegisterOrdersServer(gs, orders)
//	gs.SetServingStatus("orders.v1.Orders", healthpb.HealthCheckResponse_SERVING)
//
// It is a module of its own, so that google.golang.org/grpc reaches only
// the services that import it.
package grpcdrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/stats"
	"google.golang.org/grpc/status"

	"github.com/drainwell/drainwell/pkg/health"
)

// Server is a gRPC server that runs and drains with a health.Server. New
// adds it there. The health.Server's Run serves it, and its drain stops
// it. Register services on it, as on any grpc.ServiceRegistrar, and set
// their health with SetServingStatus. It has no Serve, Stop or
// GracefulStop, because only the drain stops it.
type Server struct {
	gs       *grpc.Server
	health   *grpchealth.Server // the statuses served
	srv      *health.Server
	ln       *connWatch
	log      *slog.Logger
	rpcs     rpcCounter
	draining chan struct{} // closed once health is NOT_SERVING
	notServe sync.Once

	applying sync.Mutex // held by apply
	mu       sync.Mutex
	set      map[string]healthpb.HealthCheckResponse_ServingStatus // SetServingStatus's
	theirs   *grpchealth.Server                                    // a health server the caller registered, or nil
	asked    map[string]bool                                       // the names Check and Watch were asked of
	readyOK  bool                                                  // the readiness last applied
}

var _ grpc.ServiceRegistrar = (*Server)(nil)

// DefaultMaxConcurrentStreams bounds the RPCs one client connection may
// run at once, as net/http's HTTP/2 server does (250), unless opts set
// grpc.MaxConcurrentStreams: grpc-go's own default is unlimited, and its
// mitigation of HTTP/2 rapid reset (CVE-2023-44487) bounds handlers by
// this setting.
const DefaultMaxConcurrentStreams = 250

// New returns a gRPC server built with opts (after
// grpc.MaxConcurrentStreams(DefaultMaxConcurrentStreams), which an option
// of opts overrides, and before a stream interceptor that makes streaming
// RPCs leave in turn and a stats handler that counts RPCs), with the
// standard health service registered, and adds it to srv as the component
// "grpc": srv's Run serves it on ln and drains it. Call it before srv.Run.
// It logs to srv's logger.
//
// The interceptor is added with grpc.ChainStreamInterceptor, after those
// of opts, so it runs innermost. Interceptors of opts run before it, in
// grpc-go's order, and see the status the client gets.
//
// A health service the caller registers too (healthpb.RegisterHealthServer,
// kept from before the port) is taken when it is grpc-go's
// *health.Server: the statuses it is given are served, following the
// readiness as above. Another implementation panics at its registration,
// in one line: grpcdrain serves grpc.health.v1.Health itself.
func New(srv *health.Server, ln net.Listener, opts ...grpc.ServerOption) *Server {
	s := newServer(srv, ln, true, opts)
	srv.Add("grpc", (*component)(s))
	return s
}

// newServer is New; endWatches false registers grpc-go's health service
// as it is, for the tests' negative control.
func newServer(srv *health.Server, ln net.Listener, endWatches bool, opts []grpc.ServerOption) *Server {
	s := &Server{
		health:   grpchealth.NewServer(),
		srv:      srv,
		ln:       &connWatch{Listener: ln},
		log:      srv.Logger(),
		draining: make(chan struct{}),
		set:      map[string]healthpb.HealthCheckResponse_ServingStatus{"": healthpb.HealthCheckResponse_SERVING},
		readyOK:  true,
	}
	s.rpcs.srv = srv
	all := append([]grpc.ServerOption{grpc.MaxConcurrentStreams(DefaultMaxConcurrentStreams)}, opts...)
	all = append(all, grpc.ChainStreamInterceptor(s.leaveInTurn), grpc.StatsHandler(&s.rpcs))
	s.gs = grpc.NewServer(all...)
	if endWatches {
		healthpb.RegisterHealthServer(s.gs, &healthService{watchEnder: watchEnder{Server: s.health, draining: s.draining}, s: s})
	} else {
		healthpb.RegisterHealthServer(s.gs, s.health)
	}
	return s
}

// RegisterService registers a service and its implementation, as
// grpc.Server's does; generated code calls it (pb.RegisterXServer(gs, impl)).
// Call it before the health.Server runs. The health service is
// grpcdrain's own: see New.
func (s *Server) RegisterService(desc *grpc.ServiceDesc, impl any) {
	if desc.ServiceName == healthpb.Health_ServiceDesc.ServiceName {
		theirs, ok := impl.(*grpchealth.Server)
		if !ok {
			panic(fmt.Sprintf("grpcdrain: %s is served by grpcdrain, following the drain's readiness: register no %T; set statuses with (*grpcdrain.Server).SetServingStatus", desc.ServiceName, impl))
		}
		s.mu.Lock()
		s.theirs = theirs
		s.mu.Unlock()
		s.log.Info("grpc health: serving the statuses of the health server the service registered, following the drain's readiness")
		return
	}
	s.gs.RegisterService(desc, impl)
}

// GetServiceInfo returns the registered services, as grpc.Server's does
// (for reflection).
func (s *Server) GetServiceInfo() map[string]grpc.ServiceInfo { return s.gs.GetServiceInfo() }

// SetServingStatus sets service's status in the health service ("" is the
// server as a whole, SERVING unless set; a registered service has none
// until it is set, and answers NotFound: a Kubernetes grpc probe with
// `service: name` needs it, one without asks for ""). It is served while the
// health.Server is ready; NOT_SERVING is served while it is not. Once the
// drain has made every status NOT_SERVING, it changes nothing:
// NOT_SERVING is for good.
func (s *Server) SetServingStatus(service string, status healthpb.HealthCheckResponse_ServingStatus) {
	s.mu.Lock()
	s.set[service] = status
	s.mu.Unlock()
	s.apply()
}

// Addr is the address the server listens on.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// component is the Server as the health.Server runs and drains it.
type component Server

func (c *component) Run(ctx context.Context) error      { return (*Server)(c).run(ctx) }
func (c *component) Shutdown(ctx context.Context) error { return (*Server)(c).shutdown(ctx) }
func (c *component) Addr() net.Addr                     { return c.ln.Addr() }

// run serves on the listener until the drain's GracefulStop or Stop,
// with the health statuses following the readiness (follow).
func (s *Server) run(context.Context) error {
	stop := make(chan struct{})
	defer close(stop)
	go s.follow(stop)
	return s.gs.Serve(s.ln)
}

// followEvery is how often the statuses of a health server the caller
// registered are copied (it tells no one of a change).
const followEvery = time.Second

// follow serves the statuses as the readiness says, on each change the
// health.Server finds, until it turns not ready for good: then every
// status is NOT_SERVING for good.
func (s *Server) follow(stop <-chan struct{}) {
	for s.srv.State() == health.StateStarting { // Run starts components, then turns Ready
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
	if known, _ := s.srv.ReadyChanged(); !known {
		_ = s.srv.Ready(context.Background()) // a first verdict (the checks run once)
	}
	var tick <-chan time.Time
	s.mu.Lock()
	if s.theirs != nil {
		t := time.NewTicker(followEvery)
		defer t.Stop()
		tick = t.C
	}
	s.mu.Unlock()
	for {
		ready, next := s.srv.ReadyChanged()
		s.setReady(ready)
		select {
		case <-s.srv.NotReady():
			s.notServing()
			return
		case <-stop:
			return
		case <-next:
		case <-tick:
		}
	}
}

// setReady notes the readiness and serves the statuses it implies. Each
// Check calls it: with its own statuses unchanged and the same verdict,
// there is nothing to serve anew (a registered health server's statuses
// are copied every time: it tells no one of a change).
func (s *Server) setReady(ready bool) {
	s.mu.Lock()
	same := s.readyOK == ready && s.theirs == nil
	s.readyOK = ready
	s.mu.Unlock()
	if !same {
		s.apply()
	}
}

// apply serves each status set (SetServingStatus's, then the registered
// health server's for "" and every registered service) while ready, and
// NOT_SERVING while not.
func (s *Server) apply() {
	s.applying.Lock() // one at a time: an older verdict never lands last
	defer s.applying.Unlock()
	s.mu.Lock()
	want := make(map[string]healthpb.HealthCheckResponse_ServingStatus, len(s.set))
	for name, st := range s.set {
		want[name] = st
	}
	if s.theirs != nil {
		names := []string{""}
		for name := range s.gs.GetServiceInfo() {
			names = append(names, name)
		}
		for name := range s.asked {
			names = append(names, name)
		}
		for _, name := range names {
			resp, err := s.theirs.Check(context.Background(), &healthpb.HealthCheckRequest{Service: name})
			if err == nil {
				want[name] = resp.GetStatus()
			}
		}
	}
	ready := s.readyOK
	s.mu.Unlock()
	for name, st := range want {
		if !ready {
			st = healthpb.HealthCheckResponse_NOT_SERVING
		}
		s.health.SetServingStatus(name, st) // no-op once Shutdown
	}
}

// notServing turns every health status NOT_SERVING for good, once, and
// lets the Watch streams end.
func (s *Server) notServing() {
	s.notServe.Do(func() {
		s.health.Shutdown()
		close(s.draining)
		s.log.Info("grpc health: NOT_SERVING", "rpcs_in_flight", s.rpcs.inflight.Load())
	})
}

// shutdown turns the health service NOT_SERVING (if the readiness policy
// has not already), sends GOAWAY and waits for the RPCs in flight; at
// ctx's end it cuts them with Stop and reports how many it cut. The
// health.Server calls it when it drains.
func (s *Server) shutdown(ctx context.Context) error {
	s.notServing() // the Watch streams must end for GracefulStop to
	done := make(chan struct{})
	s.log.Info("grpc: graceful stop (GOAWAY)", "rpcs_in_flight", s.rpcs.inflight.Load())
	go func() {
		s.gs.GracefulStop()
		close(done)
	}()
	// A client that still opens streams a stallBound after the GOAWAY
	// ignores it (grpc-go's clients stop at once): its RPCs are "late",
	// and while any came, bytes delivered are not progress (they are its
	// answers).
	s.rpcs.lateFrom.Store(time.Now().Add(stallBound).UnixNano())
	tick := time.NewTicker(stallBound / 10)
	defer tick.Stop()
	acked, _ := s.ln.delivered()
	progress := time.Now()
	for {
		select {
		case <-done:
			s.log.Info("grpc: stopped", "rpcs_total", s.rpcs.started.Load(), "health_checks", s.rpcs.probes.Load())
			return nil
		case <-ctx.Done():
			cut := s.rpcs.inflight.Load() + s.rpcs.lateInflight.Load()
			s.gs.Stop() // GracefulStop returns too
			<-done
			s.log.Error("grpc: RPCs cut at the shutdown deadline", "rpcs_cut", cut)
			return fmt.Errorf("%d RPCs cut at the shutdown deadline", cut)
		case now := <-tick.C:
			// A handler in flight at the GOAWAY is the deadline's to
			// bound; once none is, what holds GracefulStop is responses
			// waiting for clients that read nothing, or clients that
			// ignore the GOAWAY.
			n, open := s.ln.delivered()
			if s.rpcs.inflight.Load() > 0 || n != acked && s.rpcs.late.Load() == 0 {
				acked, progress = n, now
				continue
			}
			if now.Sub(progress) < stallBound {
				continue
			}
			s.gs.Stop()
			<-done
			s.log.Warn("grpc: connections cut: their clients read nothing (a zero flow-control window, an unread socket) or ignore the GOAWAY",
				"conns_cut", open, "late_rpcs", s.rpcs.late.Load(), "stalled_for", stallBound)
			return nil
		}
	}
}

// stallBound is how long GracefulStop may wait, once every handler in
// flight at the GOAWAY has returned, for connections that deliver nothing
// more to their clients; and how long after the GOAWAY a client may still
// open a stream before it counts as ignoring it.
const stallBound = time.Second

// rpcCounter counts RPCs through grpc-go's stats: inflight are those begun
// before lateFrom (UnixNano, 0 until GracefulStop), late and lateInflight
// those begun after. Each RPC but a health check is a request to srv
// (NoteRequest), with its connection's accept time.
type rpcCounter struct {
	srv                *health.Server
	started, probes    atomic.Int64 // RPCs, and health checks apart
	inflight           atomic.Int64
	late, lateInflight atomic.Int64
	lateFrom           atomic.Int64
}

type (
	lateKey     struct{}
	probeKey    struct{}
	acceptedKey struct{}
)

// healthPrefix begins the health service's methods: probes, not traffic.
var healthPrefix = "/" + healthpb.Health_ServiceDesc.ServiceName + "/"

func (r *rpcCounter) TagRPC(ctx context.Context, info *stats.RPCTagInfo) context.Context {
	if strings.HasPrefix(info.FullMethodName, healthPrefix) {
		ctx = context.WithValue(ctx, probeKey{}, true)
	}
	if from := r.lateFrom.Load(); from != 0 && time.Now().UnixNano() > from {
		return context.WithValue(ctx, lateKey{}, true)
	}
	return ctx
}
func (r *rpcCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return context.WithValue(ctx, acceptedKey{}, time.Now())
}
func (r *rpcCounter) HandleConn(context.Context, stats.ConnStats) {}
func (r *rpcCounter) HandleRPC(ctx context.Context, s stats.RPCStats) {
	late := ctx.Value(lateKey{}) != nil
	switch s.(type) {
	case *stats.Begin:
		if ctx.Value(probeKey{}) != nil {
			r.probes.Add(1)
		} else {
			r.started.Add(1)
			if accepted, ok := ctx.Value(acceptedKey{}).(time.Time); ok {
				r.srv.NoteRequest(accepted)
			}
		}
		if late {
			r.late.Add(1)
			r.lateInflight.Add(1)
		} else {
			r.inflight.Add(1)
		}
	case *stats.End:
		if late {
			r.lateInflight.Add(-1)
		} else {
			r.inflight.Add(-1)
		}
	}
}

// leaveInTurn makes each server-streaming and bidi RPC, but the health
// service's Watch, a long-lived request of the drain: the handler's stream
// context is its turn (health.Server.LongLived). An RPC whose handler
// returned at its turn, with no error of its own, ends UNAVAILABLE.
func (s *Server) leaveInTurn(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if !info.IsServerStream || info.FullMethod == healthpb.Health_Watch_FullMethodName {
		return handler(srv, ss)
	}
	turn, left := s.srv.LongLived(ss.Context())
	defer left() // once: a handler that panics has left too
	err := handler(srv, &turnStream{ServerStream: ss, turn: turn})
	left() // now, so that the turn's cause says whether it was asked first
	if errors.Is(context.Cause(turn), health.ErrTurnToLeave) && endedByTurn(err) {
		return status.Error(codes.Unavailable, "server is draining: reconnect")
	}
	return err
}

// endedByTurn reports whether a handler's error is what a handler
// returns when its context ends: none, context.Canceled, or CANCELLED.
func endedByTurn(err error) bool {
	return err == nil || errors.Is(err, context.Canceled) || status.Code(err) == codes.Canceled
}

// turnStream is a server stream whose context is its turn to leave.
type turnStream struct {
	grpc.ServerStream
	turn context.Context
}

func (t *turnStream) Context() context.Context { return t.turn }

// healthService is grpcdrain's health service: Check runs the readiness
// checks as /ready does (health.Server.Ready) and answers by them; Watch
// streams hear each status change, and end after the drain's NOT_SERVING.
type healthService struct {
	watchEnder
	s *Server
}

func (h *healthService) Check(ctx context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	h.s.ask(req.GetService())
	if !isClosed(h.s.srv.NotReady()) {
		h.s.setReady(h.s.srv.Ready(ctx) == nil)
	}
	return h.watchEnder.Server.Check(ctx, req)
}

func (h *healthService) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	if h.s.ask(req.GetService()) {
		h.s.apply()
	}
	return h.watchEnder.Watch(req, stream)
}

// ask notes a service name asked of, so that a health server the caller
// registered is copied for it too; it reports whether the name is new
// and copying matters.
func (s *Server) ask(name string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.theirs == nil || s.asked[name] {
		return false
	}
	if s.asked == nil {
		s.asked = map[string]bool{}
	}
	s.asked[name] = true
	return true
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// watchEnder is grpc-go's health service whose Watch streams end once they
// have told their client the drain's NOT_SERVING (or SERVICE_UNKNOWN): a
// Watch stream never ends by itself, and GracefulStop would wait for it
// until the deadline.
type watchEnder struct {
	*grpchealth.Server
	draining <-chan struct{}
}

func (w *watchEnder) Watch(req *healthpb.HealthCheckRequest, stream healthpb.Health_WatchServer) error {
	ctx, cancel := context.WithCancel(stream.Context())
	defer cancel()
	ws := &endingStream{Health_WatchServer: stream, ctx: ctx, cancel: cancel}
	go func() {
		select {
		case <-w.draining:
			ws.drain()
		case <-ctx.Done():
		}
	}()
	err := w.Server.Watch(req, ws)
	if ws.ended() {
		return nil // ended by the drain, after NOT_SERVING: a clean end
	}
	return err
}

// endingStream cancels its context once the drain has begun and the last
// status it sent is not SERVING.
type endingStream struct {
	healthpb.Health_WatchServer
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	sent     bool
	last     healthpb.HealthCheckResponse_ServingStatus
	draining bool
	end      bool
}

func (e *endingStream) Context() context.Context { return e.ctx }

func (e *endingStream) Send(resp *healthpb.HealthCheckResponse) error {
	err := e.Health_WatchServer.Send(resp)
	e.mu.Lock()
	defer e.mu.Unlock()
	e.sent, e.last = true, resp.GetStatus()
	e.maybeEndLocked()
	return err
}

func (e *endingStream) drain() {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.draining = true
	e.maybeEndLocked()
}

func (e *endingStream) maybeEndLocked() {
	if e.draining && e.sent && e.last != healthpb.HealthCheckResponse_SERVING {
		e.end = true
		e.cancel()
	}
}

func (e *endingStream) ended() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.end
}
