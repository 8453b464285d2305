package grpcdrain

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
)

const (
	drainDelay      = 300 * time.Millisecond
	shutdownTimeout = 3 * time.Second
)

// testService answers UnaryCall after ResponseSize milliseconds, starting
// tracked background work when the request asks for a compressed response
// (a flag the test reuses), and streams StreamingOutputCall's parameters
// one every 50 ms; no parameters means forever. StreamingInputCall reads
// until the client closes. FullDuplexCall sends one message and then
// ignores its context until release is closed. running counts the unary
// and client-streaming handlers running.
type testService struct {
	testpb.UnimplementedTestServiceServer
	srv      *health.Server
	workDone atomic.Int64
	running  atomic.Int64
	release  chan struct{}
}

func (ts *testService) UnaryCall(ctx context.Context, req *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	ts.running.Add(1)
	defer ts.running.Add(-1)
	if req.GetResponseCompressed().GetValue() {
		err := ts.srv.TryGo(func(context.Context) {
			time.Sleep(200 * time.Millisecond)
			ts.workDone.Add(1)
		})
		if err != nil {
			return nil, status.Error(codes.Unavailable, err.Error())
		}
	}
	select {
	case <-time.After(time.Duration(req.GetResponseSize()) * time.Millisecond):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &testpb.SimpleResponse{}, nil
}

func (ts *testService) StreamingOutputCall(req *testpb.StreamingOutputCallRequest, stream testpb.TestService_StreamingOutputCallServer) error {
	n := len(req.GetResponseParameters())
	for i := 0; n == 0 || i < n; i++ {
		if err := stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
			return err
		}
		select {
		case <-time.After(50 * time.Millisecond):
		case <-stream.Context().Done():
			return stream.Context().Err()
		}
	}
	return nil
}

func (ts *testService) StreamingInputCall(stream testpb.TestService_StreamingInputCallServer) error {
	ts.running.Add(1)
	defer ts.running.Add(-1)
	for {
		if _, err := stream.Recv(); err == io.EOF {
			return stream.SendAndClose(&testpb.StreamingInputCallResponse{})
		} else if err != nil {
			return err
		}
	}
}

func (ts *testService) FullDuplexCall(stream testpb.TestService_FullDuplexCallServer) error {
	if err := stream.Send(&testpb.StreamingOutputCallResponse{}); err != nil {
		return err
	}
	<-ts.release
	return nil
}

type rig struct {
	t      *testing.T
	srv    *health.Server
	gs     *Server
	svc    *testService
	conn   *grpc.ClientConn
	log    *testutil.Buffer
	stop   context.CancelFunc // the first signal
	result chan error
	// release lets the FullDuplexCall handlers return (once; the
	// cleanup calls it too).
	release func()
}

func start(t *testing.T, endWatches bool, mutate ...func(*health.Config)) *rig {
	t.Helper()
	return startWith(t, endWatches, nil, mutate...)
}

// startWith is start with the server options opts.
func startWith(t *testing.T, endWatches bool, opts []grpc.ServerOption, mutate ...func(*health.Config)) *rig {
	t.Helper()
	r := &rig{t: t, log: &testutil.Buffer{}, result: make(chan error, 1)}
	logger := slog.New(slog.NewTextHandler(r.log, nil))
	cfg := health.Config{
		DrainDelay: drainDelay, ShutdownTimeout: shutdownTimeout, IdleClose: 10 * time.Millisecond, Logger: logger,
	}
	for _, f := range mutate {
		f(&cfg)
	}
	r.srv = health.New(cfg, nil)
	httpLn := testutil.Listen(t)
	grpcLn := testutil.Listen(t)
	r.gs = newServer(r.srv, grpcLn, endWatches, opts)
	r.srv.Add("grpc", (*component)(r.gs))
	r.svc = &testService{srv: r.srv, release: make(chan struct{})}
	testpb.RegisterTestServiceServer(r.gs, r.svc)
	ctx, stop := context.WithCancel(context.Background())
	r.stop = stop
	go func() { r.result <- r.srv.Serve(ctx, httpLn) }()
	var released sync.Once
	r.release = func() { released.Do(func() { close(r.svc.release) }) }
	t.Cleanup(func() {
		r.release()
		stop()
		select {
		case <-r.result:
		case <-time.After(testutil.Patience):
			t.Error("Serve did not return")
		}
		if t.Failed() {
			t.Log(r.log.String())
		}
	})
	conn, err := grpc.NewClient(grpcLn.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	r.conn = conn
	testutil.WaitFor(t, "serving", func() bool { return r.check() == healthpb.HealthCheckResponse_SERVING })
	return r
}

func (r *rig) check() healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(r.conn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		return -1
	}
	return resp.GetStatus()
}

func (r *rig) wait() error {
	r.t.Helper()
	err := testutil.Receive(r.t, "Serve to return", r.result)
	r.result <- err // for the cleanup
	return err
}

// The health service follows the readiness policy: with the default,
// Check answers SERVING through the drain delay (the pod still serves
// Kubernetes' terminating-endpoint fallback) and NOT_SERVING once the
// listeners close; with NotReadyAtSignal, NOT_SERVING before the delay
// ends. Either way a Watch stream sees NOT_SERVING, then ends cleanly.
func TestHealthFollowsTheReadinessPolicy(t *testing.T) {
	for _, policy := range []health.ReadinessPolicy{health.ReadyWhileServing, health.NotReadyAtSignal} {
		t.Run(policy.String(), func(t *testing.T) { testHealthPolicy(t, policy) })
	}
}

func testHealthPolicy(t *testing.T, policy health.ReadinessPolicy) {
	// A delay long enough that a loaded machine still sees it running.
	r := start(t, true, func(c *health.Config) {
		c.DrainReadiness, c.DrainDelay, c.ShutdownTimeout = policy, 2*time.Second, 10*time.Second
	})
	watch, err := healthpb.NewHealthClient(r.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first = %v, %v; want SERVING", resp, err)
	}
	unknown, err := healthpb.NewHealthClient(r.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := unknown.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVICE_UNKNOWN {
		t.Fatalf("Watch unknown first = %v, %v; want SERVICE_UNKNOWN", resp, err)
	}
	r.stop()
	testutil.WaitFor(t, "draining", func() bool { return r.srv.State() == health.StateDraining })
	inDelay := func() bool { return len(r.srv.Stats().Phases) == 0 }
	switch policy {
	case health.ReadyWhileServing:
		status := r.check()
		if inDelay() && status != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check during the drain delay = %s, want SERVING", status)
		}
		// The Watch stream hears NOT_SERVING (a Check may not: the
		// GOAWAY of GracefulStop follows at once).
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Watch after the delay = %v, %v; want NOT_SERVING", resp, err)
		}
		if inDelay() {
			t.Fatal("NOT_SERVING before the drain delay ended")
		}
	case health.NotReadyAtSignal:
		testutil.WaitFor(t, "NOT_SERVING", func() bool { return r.check() == healthpb.HealthCheckResponse_NOT_SERVING })
		if !inDelay() {
			t.Fatal("NOT_SERVING only after the drain delay")
		}
		if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Watch after the signal = %v, %v; want NOT_SERVING", resp, err)
		}
	}
	if _, err := watch.Recv(); err != io.EOF {
		t.Fatalf("Watch did not end after NOT_SERVING: %v", err)
	}
	if _, err := unknown.Recv(); err != io.EOF {
		t.Fatalf("Watch of an unknown service did not end at the drain: %v", err)
	}
	if err := r.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// RPCs in flight at the signal, and those that arrive during the delay,
// finish (a unary RPC in flight at the GOAWAY too; a stream that runs past
// the delay is asked to leave: TestStreamsLeaveInTurn); so does the
// background work they start; then Serve returns nil.
func TestInFlightRPCsFinish(t *testing.T) {
	// A delay of seconds, for the RPC sent in it on a loaded machine.
	const delay, messages = 2 * time.Second, 20 // 20 x 50 ms: within the delay
	r := start(t, true, func(c *health.Config) { c.DrainDelay, c.ShutdownTimeout = delay, 10*time.Second })
	client := testpb.NewTestServiceClient(r.conn)
	stream, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{
		ResponseParameters: make([]*testpb.ResponseParameters, messages),
	})
	if err != nil {
		t.Fatal(err)
	}
	unary := make(chan error, 1)
	go func() { // past the delay: in flight at the GOAWAY
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{ResponseSize: int32((delay + 600*time.Millisecond).Milliseconds())})
		unary <- err
	}()
	testutil.WaitFor(t, "RPCs in flight", func() bool { return r.gs.rpcs.inflight.Load() >= 2 })
	r.stop()
	// During the delay: served, with tracked work.
	if _, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{ResponseCompressed: wrapTrue()}); err != nil {
		t.Fatalf("RPC during the drain delay: %v", err)
	}
	n := 0
	for {
		_, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("stream cut after %d messages: %v", n, err)
		}
		n++
	}
	if n != messages {
		t.Fatalf("stream got %d messages, want %d", n, messages)
	}
	if err := <-unary; err != nil {
		t.Fatalf("unary RPC in flight at the signal: %v", err)
	}
	if err := r.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if r.svc.workDone.Load() != 1 {
		t.Fatal("Serve returned before the RPC's background work finished")
	}
	if st := r.srv.Stats(); st.LongLivedAsked != 0 || st.LongLivedCut != 0 {
		t.Fatalf("a stream that ended in the delay was asked (%d) or cut (%d)", st.LongLivedAsked, st.LongLivedCut)
	}
	if !strings.Contains(r.log.String(), "grpc: stopped") {
		t.Fatalf("no graceful stop in the log:\n%s", r.log)
	}
}

// A stream whose handler ignores its context is asked to leave, stays,
// and is cut at the deadline: counted cut (LongLivedCut), and in the log
// and the error as an RPC cut.
func TestStreamIgnoringItsTurnIsCut(t *testing.T) {
	r := start(t, true)
	stream, err := testpb.NewTestServiceClient(r.conn).FullDuplexCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	r.stop()
	// The handler returns once the gRPC server's Stop has cut its
	// connection (the client's stream then fails), so that Stop returns
	// and reports the RPC it cut. Stop comes after the count: released
	// earlier, as soon as the drain counted the stream cut, the handler
	// could return before it and leave nothing to count.
	testutil.WaitFor(t, "the stream counted cut", func() bool { return r.srv.Stats().LongLivedCut == 1 })
	for {
		if _, err := stream.Recv(); err != nil {
			if status.Code(err) == codes.OK {
				t.Fatalf("stream ended cleanly, want cut: %v", err)
			}
			break
		}
	}
	r.release()
	err = r.wait()
	if !errors.Is(err, health.ErrShutdownTimeout) || !strings.Contains(err.Error(), "1 RPCs cut") {
		t.Fatalf("Serve = %v, want a shutdown timeout with 1 RPC cut", err)
	}
	// The phases end a tenth before the deadline (what expiring does
	// fits in that tenth); how soon after: BENCHMARKS.md.
	if d, phasesEnd := time.Since(t0), shutdownTimeout-shutdownTimeout/10; d < phasesEnd {
		t.Fatalf("Serve returned %s after the signal, before the phases' end at %s", d, phasesEnd)
	}
	if st := r.srv.Stats(); st.LongLivedAsked != 1 || st.LongLivedLeft != 0 || st.LongLivedCut != 1 {
		t.Fatalf("long-lived asked %d, left %d, cut %d; want 1, 0, 1", st.LongLivedAsked, st.LongLivedLeft, st.LongLivedCut)
	}
	if log := r.log.String(); !strings.Contains(log, "rpcs_cut=1") || !strings.Contains(log, "grpc shutdown") || !strings.Contains(log, "long_lived_cut=1") {
		t.Fatalf("log does not count the cut RPC in phase grpc shutdown:\n%s", log)
	}
}

// Negative control: grpc-go's health service as it is. Its Watch stream
// never ends, so GracefulStop waits for it to the deadline.
func TestPlainHealthWatchHoldsGracefulStop(t *testing.T) {
	r := start(t, false)
	watch, err := healthpb.NewHealthClient(r.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	r.stop()
	err = r.wait()
	if !errors.Is(err, health.ErrShutdownTimeout) || !strings.Contains(err.Error(), "1 RPCs cut") {
		t.Fatalf("Serve = %v; the control should be cut at the deadline with its Watch stream", err)
	}
}

func wrapTrue() *testpb.BoolValue { return &testpb.BoolValue{Value: true} }

// The server bounds each connection's concurrent streams (grpc-go's
// default is unlimited), and a caller's own bound wins.
func TestMaxConcurrentStreams(t *testing.T) {
	tests := []struct {
		name string
		opts []grpc.ServerOption
		want uint32
	}{
		{"default", nil, DefaultMaxConcurrentStreams},
		{"the caller's", []grpc.ServerOption{grpc.MaxConcurrentStreams(10)}, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := health.New(health.Config{DrainDelay: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
			ln := testutil.Listen(t)
			srv.Add("grpc", (*component)(newServer(srv, ln, true, tt.opts)))
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, testutil.Listen(t)) }()
			t.Cleanup(func() { stop(); <-done })
			if got := serverMaxStreams(t, ln.Addr().String()); got != tt.want {
				t.Fatalf("SETTINGS_MAX_CONCURRENT_STREAMS = %d, want %d", got, tt.want)
			}
		})
	}
}

// serverMaxStreams reads the server's first SETTINGS frame.
func serverMaxStreams(t *testing.T, addr string) uint32 {
	t.Helper()
	var c net.Conn
	var err error
	testutil.WaitFor(t, "the gRPC listener", func() bool {
		c, err = net.Dial("tcp", addr)
		return err == nil
	})
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
			v, ok := sf.Value(http2.SettingMaxConcurrentStreams)
			if !ok {
				return 0 // not sent: unlimited
			}
			return v
		}
	}
}

// A client that advertises a zero flow-control window reads none of its
// response: once every handler has returned, it holds GracefulStop for
// the stall bound, not to the deadline, and its connection is counted as
// cut. (Before: the drain ran to the deadline, exit 4, "0 RPCs cut".) The
// control opens its window a byte every 200 ms: its response takes longer
// than the bound to arrive, but each byte is progress, and it is answered
// in full.
func TestZeroWindowClientIsCut(t *testing.T) {
	for _, opens := range []bool{false, true} {
		name := map[bool]string{false: "zero window", true: "control: window opened"}[opens]
		t.Run(name, func(t *testing.T) {
			r := start(t, true)
			c, fr := zeroWindowCall(t, r.gs.ln.Addr().String())
			var writeMu sync.Mutex
			defer c.Close()
			r.stop()
			testutil.WaitFor(t, "the graceful stop", func() bool { return strings.Contains(r.log.String(), "graceful stop") })
			if opens {
				go func() {
					for range 16 { // more than the response's 7 bytes
						writeMu.Lock()
						err := fr.WriteWindowUpdate(1, 1)
						writeMu.Unlock()
						if err != nil {
							return
						}
						time.Sleep(200 * time.Millisecond)
					}
				}()
				if got := readToTrailers(t, fr, &writeMu); got != "0" {
					t.Fatalf("grpc-status %q, want 0", got)
				}
			}
			if err := r.wait(); err != nil {
				t.Fatalf("Serve = %v, want a clean drain", err)
			}
			cut := strings.Contains(r.log.String(), "conns_cut=1")
			if cut == opens {
				t.Fatalf("connection cut = %v, want %v:\n%s", cut, !opens, r.log.String())
			}
		})
	}
}

// zeroWindowCall opens a connection with a zero initial stream window and
// sends one Health/Check on stream 1.
func zeroWindowCall(t *testing.T, addr string) (net.Conn, *http2.Framer) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(testutil.Patience))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: requestHead("/grpc.health.v1.Health/Check"), EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteData(1, true, []byte{0, 0, 0, 0, 0}); err != nil { // an empty HealthCheckRequest
		t.Fatal(err)
	}
	return c, fr
}

// readToTrailers reads the connection as a client does, answering the
// server's PINGs (GracefulStop's GOAWAY waits for one), until the server
// closes it, and returns stream 1's grpc-status.
func readToTrailers(t *testing.T, fr *http2.Framer, writeMu *sync.Mutex) string {
	t.Helper()
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	status := "none"
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			return status // the server closed the connection
		}
		switch f := f.(type) {
		case *http2.PingFrame:
			if !f.IsAck() {
				writeMu.Lock()
				err := fr.WritePing(true, f.Data)
				writeMu.Unlock()
				if err != nil {
					return status
				}
			}
		case *http2.MetaHeadersFrame:
			for _, hf := range f.RegularFields() {
				if hf.Name == "grpc-status" {
					status = hf.Value
				}
			}
		}
	}
}

// requestHead is the HPACK block of a gRPC request's headers for path.
func requestHead(path string) []byte {
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path},
		{":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return hb.Bytes()
}

// HTTP/2 rapid reset (CVE-2023-44487): a client opens streams and resets
// each at once. The streams end, but their handlers run on; grpc-go bounds
// the handlers by MaxConcurrentStreams, which the server sets. The handler
// here ignores its context: the running handlers reach the bound and stay
// there. The control, grpc-go's own default (unlimited), runs past it.
func TestRapidResetBoundsHandlers(t *testing.T) {
	tests := []struct {
		name    string
		opts    []grpc.ServerOption
		control bool
	}{
		{"default", nil, false},
		{"control: grpc-go's default, unlimited", []grpc.ServerOption{grpc.MaxConcurrentStreams(math.MaxUint32)}, true},
	}
	const pairs = 2 * DefaultMaxConcurrentStreams
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			var running, most atomic.Int64
			hold := grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
				n := running.Add(1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				<-release
				running.Add(-1)
				return nil
			})
			srv := health.New(health.Config{DrainDelay: -1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, nil)
			ln := testutil.Listen(t)
			srv.Add("grpc", (*component)(newServer(srv, ln, true, append(tt.opts, hold))))
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, testutil.Listen(t)) }()
			t.Cleanup(func() { close(release); stop(); <-done })

			fr := dialH2(t, ln.Addr().String())
			head := requestHead("/attack.Service/Method")
			for i := range uint32(pairs) {
				id := 2*i + 1
				if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: head, EndHeaders: true}) != nil ||
					fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
					t.Fatal("the attack's writes failed")
				}
			}
			if tt.control {
				testutil.WaitFor(t, "more handlers than the bound", func() bool { return running.Load() > DefaultMaxConcurrentStreams })
				return
			}
			testutil.WaitFor(t, "handlers at the bound", func() bool { return running.Load() == DefaultMaxConcurrentStreams })
			if m := most.Load(); m > DefaultMaxConcurrentStreams {
				t.Fatalf("%d handlers at once, want at most %d", m, DefaultMaxConcurrentStreams)
			}
		})
	}
}

// A client that ignores the GOAWAY and goes on opening and resetting
// streams (a rapid-reset loop) keeps handlers starting: here each runs on
// for 20 ms after its reset. Once the RPCs in flight at the GOAWAY have
// ended, its new ones hold GracefulStop no longer: cut, and the drain ends
// clean, long before the deadline. (Before: held to the deadline.)
func TestClientIgnoringGOAWAYIsCut(t *testing.T) {
	logs := &testutil.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	srv := health.New(health.Config{DrainDelay: -1, ShutdownTimeout: 20 * time.Second, Logger: logger}, nil)
	ln := testutil.Listen(t)
	var handled atomic.Int64
	linger := grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		handled.Add(1)
		time.Sleep(20 * time.Millisecond)
		return nil
	})
	srv.Add("grpc", (*component)(newServer(srv, ln, true, []grpc.ServerOption{linger})))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, testutil.Listen(t)) }()
	testutil.WaitFor(t, "serving", func() bool { return srv.State() == health.StateReady })

	fr := dialH2(t, ln.Addr().String()) // it reads: what the server sends is acknowledged
	head := requestHead("/attack.Service/Method")
	go func() {
		for id := uint32(1); id < 1<<30; id += 2 {
			if fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: head, EndHeaders: true}) != nil ||
				fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	testutil.WaitFor(t, "the attack's handlers", func() bool { return handled.Load() >= 100 })
	stop()
	if err := testutil.Receive(t, "Serve to return", done); err != nil {
		t.Fatalf("Serve = %v, want a clean drain\n%s", err, logs.String())
	}
	if log := logs.String(); !strings.Contains(log, "conns_cut=1") || strings.Contains(log, "late_rpcs=0 ") {
		t.Fatalf("no cut of a client that ignored the GOAWAY in the log:\n%s", log)
	}
}

// dialH2 opens an HTTP/2 connection to addr that reads (and discards)
// whatever the server sends, and returns its framer for writing.
func dialH2(t *testing.T, addr string) *http2.Framer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go io.Copy(io.Discard, c)
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	fr.WriteSettings()
	return fr
}
