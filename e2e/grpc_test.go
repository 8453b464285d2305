package e2e

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/drainwell/drainwell/cmd/app/service"
	"github.com/drainwell/drainwell/internal/testutil"
)

func grpcConn(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func grpcCheck(conn *grpc.ClientConn, svc string) (healthpb.HealthCheckResponse_ServingStatus, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	resp, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
	return resp.GetStatus(), err
}

// follow opens the app's Follow stream for n counts (0: forever) and
// reads its first message.
func follow(t *testing.T, conn *grpc.ClientConn, n int64) grpc.ClientStream {
	t.Helper()
	st, err := conn.NewStream(context.Background(), &grpc.StreamDesc{ServerStreams: true}, service.GRPCFollow)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(wrapperspb.Int64(n)); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if err := st.RecvMsg(new(wrapperspb.Int64Value)); err != nil {
		t.Fatal(err)
	}
	return st
}

// The example app over gRPC, with its admin listener: the health service
// stays SERVING through the drain delay and turns NOT_SERVING when the
// listeners close, a Watch stream sees it and ends, unary RPCs during the delay and a stream in flight finish, every
// increment they were answered for lands in Redis, and the admin listener
// answers to the end.
func TestGRPCDrain(t *testing.T) {
	redis := startRedis(t)
	live := filepath.Join(t.TempDir(), "live")
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "GRPC_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0",
		"LIVE_FILE="+live, "REDIS_ADDR="+redis.Addr,
		"DRAIN_DELAY=1s", "WORK_DELAY=200ms", "SHUTDOWN_TIMEOUT=5s", "IDLE_CLOSE=100ms")
	if p.GRPCAddr == "" || p.AdminAddr == "" {
		t.Fatalf("no gRPC or admin address in the log:\n%s", p.Stderr())
	}
	conn := grpcConn(t, p.GRPCAddr)
	for _, svc := range []string{"", service.GRPCService} {
		if st, err := grpcCheck(conn, svc); err != nil || st != healthpb.HealthCheckResponse_SERVING {
			t.Fatalf("Check(%q) = %v %v before the signal, want SERVING", svc, st, err)
		}
	}
	watch, err := healthpb.NewHealthClient(conn).Watch(context.Background(), &healthpb.HealthCheckRequest{Service: service.GRPCService})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch = %v %v, want SERVING", resp, err)
	}
	const followN = 20 // 2 s at 100 ms: past the drain delay
	stream := follow(t, conn, followN)

	// Unary increments, one every 10 ms, from before the signal until the
	// app logs that the delay is over (it does so before it stops
	// accepting): the end is an order, not a time. An RPC that fails once
	// that line is there was the test's lateness, not the server's.
	delayOver := func() bool { return strings.Contains(p.Stderr(), `msg="drain delay over"`) }
	var mu sync.Mutex
	var sent, ok int
	var rpcErrs []string
	incrDone := make(chan struct{})
	go func() {
		defer close(incrDone)
		for !delayOver() {
			time.Sleep(10 * time.Millisecond)
			err := conn.Invoke(context.Background(), service.GRPCIncr, &emptypb.Empty{}, &emptypb.Empty{})
			mu.Lock()
			switch {
			case err == nil:
				sent++
				ok++
			case !delayOver():
				sent++
				rpcErrs = append(rpcErrs, err.Error())
			}
			mu.Unlock()
		}
	}()

	t0 := time.Now()
	p.Signal(syscall.SIGTERM)
	waitDraining(t, "http://"+p.AdminAddr)
	// Through the delay the pod still serves Kubernetes' fallback to
	// terminating endpoints: SERVING and /ready 200 (asked before the log
	// says the delay is over).
	st, _ := grpcCheck(conn, service.GRPCService)
	code := httpStatus(t, "http://"+p.AdminAddr+"/ready")
	if !delayOver() && (st != healthpb.HealthCheckResponse_SERVING || code != 200) {
		t.Fatalf("during the drain delay: health %v, admin /ready %d; want SERVING and 200", st, code)
	}
	testutil.Receive(t, "the increments to stop at the delay's end", incrDone)
	// The Watch stream hears NOT_SERVING (Check cannot: GracefulStop's
	// GOAWAY follows at once), after the delay.
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after the delay = %v %v, want NOT_SERVING", resp, err)
	}
	testutil.WaitFor(t, "NOT_SERVING in the log", func() bool { return strings.Contains(p.Stderr(), `msg="grpc health: NOT_SERVING"`) })
	if log := p.Stderr(); !delayOver() || strings.Index(log, `msg="drain delay over"`) > strings.Index(log, `msg="grpc health: NOT_SERVING"`) {
		t.Fatalf("NOT_SERVING before the drain delay was over:\n%s", log)
	}
	if _, err := watch.Recv(); err != io.EOF {
		t.Fatalf("Watch did not end after NOT_SERVING: %v", err)
	}
	if code := httpStatus(t, "http://"+p.AdminAddr+"/ready"); code != 503 {
		t.Fatalf("admin /ready = %d once the listeners close, want 503", code)
	}

	// The main and gRPC listeners are gone (the stream is still in flight); the admin one still answers.
	testutil.WaitFor(t, "main listener closed", func() bool { return testutil.Refused(p.Addr) })
	if code := httpStatus(t, "http://"+p.AdminAddr+"/live"); code != 200 {
		t.Fatalf("admin /live after the main listener closed = %d", code)
	}
	// The stream, long-lived, is asked to leave at its turn once the delay
	// is over: UNAVAILABLE, which a client retries elsewhere.
	got := 1
	for {
		err := stream.RecvMsg(new(wrapperspb.Int64Value))
		if err == nil {
			got++
			continue
		}
		if status.Code(err) != codes.Unavailable || got >= followN {
			t.Fatalf("Follow ended after %d of %d messages with %v, want UNAVAILABLE before its end", got, followN, err)
		}
		break
	}
	code, err = p.Wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Fatalf("exit %d, want 0:\n%s", code, p.Stderr())
	}
	mu.Lock()
	defer mu.Unlock()
	if sent == 0 || ok != sent {
		t.Fatalf("unary RPCs during the delay: %d sent, %d OK: %v", sent, ok, rpcErrs)
	}
	n, err := redis.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(ok) {
		t.Fatalf("counter %d, want %d (one per RPC answered OK)", n, ok)
	}
	t.Logf("%d RPCs during the delay, all OK, counter %d; exit 0 after %s", sent, n, time.Since(t0).Round(time.Millisecond))
	if testutil.Refused(p.AdminAddr) == false {
		t.Fatal("admin listener still open after exit")
	}
}

// A stream that never ends leaves at its turn, right after the delay (it
// is the only one): UNAVAILABLE, and the drain ends long before its
// deadline. (A handler that ignores its turn is cut at the deadline:
// pkg/grpcdrain's TestStreamIgnoringItsTurnIsCut.)
func TestGRPCStreamLeavesInTurn(t *testing.T) {
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "GRPC_ADDR=127.0.0.1:0", "LIVE_FILE="+filepath.Join(t.TempDir(), "live"),
		"DRAIN_DELAY=200ms", "WORK_DELAY=0", "SHUTDOWN_TIMEOUT=5s", "IDLE_CLOSE=100ms")
	stream := follow(t, grpcConn(t, p.GRPCAddr), 0)
	t0 := time.Now()
	p.Signal(syscall.SIGTERM)
	var err error
	for err == nil {
		err = stream.RecvMsg(new(wrapperspb.Int64Value))
	}
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("the stream ended with %v, want UNAVAILABLE", err)
	}
	code, err := p.Wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(t0); code != 0 || took >= 4*time.Second {
		t.Fatalf("exit %d %s after SIGTERM, want 0 well before the 5s deadline:\n%s", code, took, p.Stderr())
	}
	if log := p.Stderr(); !strings.Contains(log, "long_lived_asked=1 long_lived_left=1 long_lived_cut=0") {
		t.Fatalf("the drain report does not count the stream as left:\n%s", log)
	}
}

func httpStatus(t *testing.T, url string) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// The example app over gRPC, as a native grpc readiness probe sees it
// (issue 28): its readiness check (Redis) decides grpc.health.v1 as it
// decides /ready. Redis stopped: Check("") and the app's service answer
// NOT_SERVING; Redis back: SERVING. Then RPCs on new connections until
// the drain delay is over are traffic: the drain report counts them and
// the app warns to raise DRAIN_DELAY (both stayed silent for gRPC).
func TestGRPCHealthFollowsTheChecksAndRPCsAreTraffic(t *testing.T) {
	redis := startRedis(t)
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "GRPC_ADDR=127.0.0.1:0", "LIVE_FILE="+filepath.Join(t.TempDir(), "live"),
		"REDIS_ADDR="+redis.Addr, "DRAIN_DELAY=1s", "WORK_DELAY=100ms", "SHUTDOWN_TIMEOUT=5s")
	if p.GRPCAddr == "" {
		t.Fatalf("no gRPC address in the serving line:\n%s", p.Stderr())
	}
	conn := grpcConn(t, p.GRPCAddr)
	status := func(want healthpb.HealthCheckResponse_ServingStatus) func() bool {
		return func() bool {
			for _, svc := range []string{"", service.GRPCService} {
				if st, err := grpcCheck(conn, svc); err != nil || st != want {
					return false
				}
			}
			return true
		}
	}
	testutil.WaitFor(t, "SERVING with Redis up", status(healthpb.HealthCheckResponse_SERVING))
	redis.Stop()
	testutil.WaitFor(t, "NOT_SERVING with Redis down", status(healthpb.HealthCheckResponse_NOT_SERVING))
	if code := httpStatus(t, "http://"+p.Addr+"/ready"); code != 503 {
		t.Fatalf("/ready = %d with Redis down, want 503 as gRPC health says", code)
	}
	if err := redis.Restart(); err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "SERVING with Redis back", status(healthpb.HealthCheckResponse_SERVING))

	p.Signal(syscall.SIGTERM)
	testutil.WaitFor(t, "draining", func() bool { return strings.Contains(p.Stderr(), `msg="signal received: draining"`) })
	delayOver := func() bool { return strings.Contains(p.Stderr(), `msg="drain delay over"`) }
	// A call on a new connection every 20 ms, each started on schedule
	// whatever the others take (an open loop: a slow call on a loaded
	// machine does not leave the delay's last fifth without one).
	var wg sync.WaitGroup
	var mu sync.Mutex
	calls := 0
	var failed []string
	for !delayOver() {
		wg.Go(func() {
			cc, err := grpc.NewClient(p.GRPCAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				return
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			// WaitForReady retries a dial only (TestGRPCServices says why).
			err = cc.Invoke(ctx, service.GRPCIncr, &emptypb.Empty{}, &emptypb.Empty{}, grpc.WaitForReady(true))
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				calls++
			} else if !delayOver() {
				failed = append(failed, err.Error())
			}
		})
		time.Sleep(20 * time.Millisecond)
	}
	wg.Wait()
	if len(failed) > 0 {
		t.Fatalf("RPCs on new connections during the delay failed: %v", failed)
	}
	if code, err := p.Wait(10 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v, want 0:\n%s", code, err, p.Stderr())
	}
	log := p.Stderr()
	if calls == 0 || strings.Contains(log, "requests_after_signal=0 ") || !strings.Contains(log, "raise DRAIN_DELAY") {
		t.Fatalf("%d RPCs on new connections to the end of the delay: want them in the drain report and the warning:\n%s", calls, log)
	}
}
