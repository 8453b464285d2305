package grpcdrain

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
)

// What a port of a public gRPC service met (issue 28), each as the
// service wrote it: New alone, no HTTP, a health server of its own.

// service is a gRPC-only service built as the docs show: New adds the gRPC
// server to the health.Server, which then opens no HTTP listener.
type service struct {
	srv    *health.Server
	gs     *Server
	conn   *grpc.ClientConn
	addr   string
	log    *testutil.Buffer
	stop   context.CancelFunc
	result chan error
}

func startService(t *testing.T, cfg health.Config, register func(*Server)) *service {
	t.Helper()
	s := &service{log: &testutil.Buffer{}, result: make(chan error, 1)}
	cfg.Logger = slog.New(slog.NewTextHandler(s.log, nil))
	s.srv = health.New(cfg, nil)
	ln := testutil.Listen(t)
	s.addr = ln.Addr().String()
	s.gs = New(s.srv, ln)
	testpb.RegisterTestServiceServer(s.gs, &testService{srv: s.srv})
	if register != nil {
		register(s.gs)
	}
	ctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	go func() { s.result <- s.srv.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		select {
		case <-s.result:
		case <-time.After(testutil.Patience):
			t.Error("Run did not return")
		}
		if t.Failed() {
			t.Log(s.log.String())
		}
	})
	conn, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	s.conn = conn
	testutil.WaitFor(t, "serving", func() bool {
		select {
		case err := <-s.result:
			t.Fatalf("Run = %v before serving", err)
		default:
		}
		return s.srv.State() == health.StateReady
	})
	return s
}

func (s *service) check(service string) healthpb.HealthCheckResponse_ServingStatus {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(s.conn).Check(ctx, &healthpb.HealthCheckRequest{Service: service})
	if err != nil {
		return -1
	}
	return resp.GetStatus()
}

func (s *service) wait(t *testing.T) error {
	t.Helper()
	err := testutil.Receive(t, "Run to return", s.result)
	s.result <- err // for the cleanup
	return err
}

// Traps 1 and the start-up line: New alone serves (no srv.Add to forget),
// a service with no HTTP handler opens no HTTP listener (it took :8080),
// and the start-up line names the gRPC address and does not claim ready.
func TestGRPCOnlyServiceServesAlone(t *testing.T) {
	s := startService(t, health.Config{DrainDelay: health.NoDrainDelay}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	if _, err := testpb.NewTestServiceClient(s.conn).UnaryCall(ctx, &testpb.SimpleRequest{}); err != nil {
		t.Fatalf("an RPC on New's server alone: %v", err)
	}
	if a := s.srv.Addr(); a != nil {
		t.Fatalf("a service with no HTTP handler listens on %s for HTTP", a)
	}
	line := logLine(s.log.String(), `msg=serving`)
	if !strings.Contains(line, "grpc_addr="+s.addr) || strings.Contains(line, " addr=") {
		t.Fatalf("start-up line %q: want grpc_addr=%s and no HTTP addr", line, s.addr)
	}
	s.stop()
	if err := s.wait(t); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// Trap 3: grpc.health.v1 answers by the readiness checks, as /ready does:
// a failing check makes Check("") and each service NOT_SERVING (a native
// grpc readiness probe takes the pod out), its recovery SERVING again, and
// a Watch stream hears both.
func TestHealthFollowsTheChecks(t *testing.T) {
	var failing atomic.Bool
	s := startService(t, health.Config{DrainDelay: health.NoDrainDelay}, func(gs *Server) {
		gs.SetServingStatus("orders.v1.Orders", healthpb.HealthCheckResponse_SERVING)
	})
	s.srv.AddCheck("database", func(context.Context) error {
		if failing.Load() {
			return errors.New("down")
		}
		return nil
	})
	watch, err := healthpb.NewHealthClient(s.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{Service: "orders.v1.Orders"})
	if err != nil {
		t.Fatal(err)
	}
	recv := func(want healthpb.HealthCheckResponse_ServingStatus) {
		t.Helper()
		resp, err := watch.Recv()
		if err != nil || resp.GetStatus() != want {
			t.Fatalf("Watch = %v, %v; want %s", resp, err, want)
		}
	}
	recv(healthpb.HealthCheckResponse_SERVING)
	for _, name := range []string{"", "orders.v1.Orders"} {
		if st := s.check(name); st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %s with every check passing, want SERVING", name, st)
		}
	}
	failing.Store(true)
	for _, name := range []string{"", "orders.v1.Orders"} {
		if st := s.check(name); st != healthpb.HealthCheckResponse_NOT_SERVING {
			t.Fatalf("Check(%q) = %s with a check failing, want NOT_SERVING", name, st)
		}
	}
	if err := s.srv.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("Ready = %v, want the failing check named", err)
	}
	recv(healthpb.HealthCheckResponse_NOT_SERVING)
	failing.Store(false)
	if st := s.check(""); st != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Check(\"\") = %s after the check recovered, want SERVING", st)
	}
	recv(healthpb.HealthCheckResponse_SERVING)
}

// Trap 2: a service that keeps its own registration of grpc-go's health
// server does not crash (grpc-go's FATAL "duplicate service
// registration"); the statuses it sets there are served, following the
// readiness. A health server of another type is refused in one line.
func TestCallersHealthServerIsTaken(t *testing.T) {
	theirs := grpchealth.NewServer()
	theirs.SetServingStatus("orders.v1.Orders", healthpb.HealthCheckResponse_SERVING)
	s := startService(t, health.Config{DrainDelay: health.NoDrainDelay}, func(gs *Server) { healthpb.RegisterHealthServer(gs, theirs) })
	testutil.WaitFor(t, "their status served", func() bool {
		return s.check("orders.v1.Orders") == healthpb.HealthCheckResponse_SERVING
	})
	theirs.SetServingStatus("orders.v1.Orders", healthpb.HealthCheckResponse_NOT_SERVING)
	testutil.WaitFor(t, "their change served", func() bool {
		return s.check("orders.v1.Orders") == healthpb.HealthCheckResponse_NOT_SERVING
	})

	msg := func() (msg string) {
		defer func() { msg = fmt.Sprint(recover()) }()
		srv := health.New(health.Config{}, nil)
		healthpb.RegisterHealthServer(New(srv, testutil.Listen(t)), ownHealth{})
		return ""
	}()
	if !strings.HasPrefix(msg, "grpcdrain: grpc.health.v1.Health is served by grpcdrain") || strings.Contains(msg, "\n") {
		t.Fatalf("another health implementation: %q, want one line saying grpcdrain serves it", msg)
	}
}

type ownHealth struct {
	healthpb.UnimplementedHealthServer
}

// Trap 4: RPCs are traffic. RPCs on connections opened after the signal
// count in Stats and the drain report, and, late in the delay, fire the
// warning to raise DRAIN_DELAY, as HTTP requests do. Health checks are
// probes: on their own they count nothing (the control).
func TestRPCsAfterTheSignalAreTraffic(t *testing.T) {
	for _, tt := range []struct {
		name  string
		probe bool // only health checks after the signal
	}{{"rpcs", false}, {"health checks only", true}} {
		t.Run(tt.name, func(t *testing.T) {
			delay := 1500 * time.Millisecond
			s := startService(t, health.Config{DrainDelay: delay}, nil)
			s.stop()
			testutil.WaitFor(t, "draining", func() bool { return s.srv.State() == health.StateDraining })
			// A new connection per call, as the Service's stale rules
			// route it, one every 20 ms until the delay is over, each
			// on schedule whatever the others take (an open loop).
			delayOver := func() bool { return len(s.srv.Stats().Phases) > 0 }
			var wg sync.WaitGroup
			failed := make(chan error, 1000)
			for !delayOver() {
				wg.Go(func() {
					cc, err := grpc.NewClient(s.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
					if err != nil {
						failed <- err
						return
					}
					defer cc.Close()
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					if tt.probe {
						_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
					} else {
						// WaitForReady retries a dial only (e2e/consumer's TestGRPCServices says why).
						_, err = testpb.NewTestServiceClient(cc).UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true))
					}
					if err != nil && !delayOver() {
						failed <- err
					}
				})
				time.Sleep(20 * time.Millisecond)
			}
			wg.Wait()
			close(failed)
			for err := range failed {
				t.Fatalf("a call during the delay failed: %v", err)
			}
			if err := s.wait(t); err != nil {
				t.Fatalf("Run = %v", err)
			}
			st := s.srv.Stats()
			warned := strings.Contains(s.log.String(), "raise DRAIN_DELAY")
			report := logLine(s.log.String(), `msg="drain report"`)
			if tt.probe {
				if st.RequestsAfterSignal != 0 || !st.LastRequestAfterSignal.IsZero() || warned {
					t.Fatalf("health checks counted as traffic: %d requests, last %v, warned %v", st.RequestsAfterSignal, st.LastRequestAfterSignal, warned)
				}
				return
			}
			if st.RequestsAfterSignal == 0 || st.LastRequestAfterSignal.IsZero() {
				t.Fatalf("RPCs after the signal: Stats say %d requests, last at %v", st.RequestsAfterSignal, st.LastRequestAfterSignal)
			}
			if strings.Contains(report, "requests_after_signal=0 ") || !warned {
				t.Fatalf("RPCs until the end of the delay: report %q, warned %v", report, warned)
			}
		})
	}
}

// logLine is the first line of log that holds substr, or "".
func logLine(log, substr string) string {
	for line := range strings.Lines(log) {
		if strings.Contains(line, substr) {
			return line
		}
	}
	return ""
}
