package grpcdrain

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
)

// ending is how and when a client saw its stream end.
type ending struct {
	at  time.Time
	err error
}

// openStream opens a StreamingOutputCall that runs until its context
// ends, reads its first message (its handler runs: it is declared
// long-lived before the next one), and reports its end on the returned
// channel.
func openStream(t *testing.T, client testpb.TestServiceClient) <-chan ending {
	t.Helper()
	stream, err := client.StreamingOutputCall(context.Background(), &testpb.StreamingOutputCallRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.Recv(); err != nil {
		t.Fatal(err)
	}
	end := make(chan ending, 1)
	go func() {
		for {
			if _, err := stream.Recv(); err != nil {
				end <- ending{time.Now(), err}
				return
			}
		}
	}()
	return end
}

// wantLeft fails unless err is the status of a stream that left at its
// turn: UNAVAILABLE, which clients retry.
func wantLeft(t *testing.T, what string, err error) {
	t.Helper()
	if st := status.Convert(err); st.Code() != codes.Unavailable || !strings.Contains(st.Message(), "draining") {
		t.Fatalf("%s ended with %v, want UNAVAILABLE (server is draining)", what, err)
	}
}

// Server streams leave in turn: once the drain delay is over, the drain
// asks them one at a time, oldest first, spread over the LeaveWindow, and
// each ends UNAVAILABLE; Stats count each asked and left, and the drain
// ends clean. The control, NoLeaveWindow, asks them all at once. The
// times are real: the bounds are loose (the asks are a window/streams
// apart).
func TestStreamsLeaveInTurn(t *testing.T) {
	const streams, window = 4, 2 * time.Second
	for _, tt := range []struct {
		name   string
		window time.Duration
	}{
		{"window", window},
		{"control: NoLeaveWindow", health.NoLeaveWindow},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, true, func(c *health.Config) { c.LeaveWindow, c.ShutdownTimeout = tt.window, 10*time.Second })
			client := testpb.NewTestServiceClient(r.conn)
			var ends []<-chan ending
			for range streams {
				ends = append(ends, openStream(t, client))
			}
			if n := r.srv.Stats().LongLivedOpen; n != streams {
				t.Fatalf("%d long-lived requests open, want %d streams", n, streams)
			}
			r.stop()
			if err := r.wait(); err != nil {
				t.Fatalf("Serve = %v, want a clean drain", err)
			}
			st := r.srv.Stats()
			delayOver := st.DrainStarted.Add(st.Phases[0].Duration)
			var at []time.Time
			for i, end := range ends {
				e := testutil.Receive(t, "the stream's end", end)
				wantLeft(t, fmt.Sprintf("stream %d", i), e.err)
				if e.at.Before(delayOver) {
					t.Fatalf("stream %d ended %s before the drain delay was over", i, delayOver.Sub(e.at))
				}
				at = append(at, e.at)
			}
			if st.LongLivedAsked != streams || st.LongLivedLeft != streams || st.LongLivedCut != 0 || st.LongLivedOpen != 0 {
				t.Fatalf("long-lived asked %d, left %d, cut %d, open %d; want %d, %d, 0, 0",
					st.LongLivedAsked, st.LongLivedLeft, st.LongLivedCut, st.LongLivedOpen, streams, streams)
			}
			spread := at[streams-1].Sub(at[0])
			var after []time.Duration
			for _, a := range at {
				after = append(after, a.Sub(delayOver).Round(time.Millisecond))
			}
			t.Logf("the streams ended %v after the drain delay", after)
			if tt.window < 0 {
				if spread > window/4 {
					t.Fatalf("with NoLeaveWindow the streams ended over %s, want at once", spread)
				}
				return
			}
			for i := 1; i < streams; i++ {
				if gap := at[i].Sub(at[i-1]); gap < tt.window/streams/4 {
					t.Fatalf("stream %d ended %s after stream %d, want the oldest first, about %s apart (ends: %v)",
						i, gap, i-1, tt.window/streams, at)
				}
			}
			if spread < tt.window/2 {
				t.Fatalf("the streams ended over %s, want at least half the %s window", spread, tt.window)
			}
		})
	}
}

// Only server-streaming and bidi RPCs are long-lived. A unary RPC, a
// client-streaming RPC and a health Watch in flight are not counted. Through
// the drain the server stream alone is asked to leave. The unary and
// client-streaming RPCs, in flight when it is asked, finish OK. The Watch
// hears NOT_SERVING and ends cleanly, as the drain ends it.
func TestOnlyServerStreamsAreLongLived(t *testing.T) {
	r := start(t, true, func(c *health.Config) { c.ShutdownTimeout = 10 * time.Second })
	client := testpb.NewTestServiceClient(r.conn)
	watch, err := healthpb.NewHealthClient(r.conn).Watch(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("Watch first = %v, %v; want SERVING", resp, err)
	}
	input, err := client.StreamingInputCall(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := input.Send(&testpb.StreamingInputCallRequest{}); err != nil {
		t.Fatal(err)
	}
	unary := make(chan error, 1)
	go func() { // runs past the delay, while the stream is asked
		_, err := client.UnaryCall(context.Background(), &testpb.SimpleRequest{ResponseSize: int32((drainDelay + time.Second).Milliseconds())})
		unary <- err
	}()
	testutil.WaitFor(t, "the unary and client-streaming handlers", func() bool { return r.svc.running.Load() == 2 })
	if n := r.srv.Stats().LongLivedOpen; n != 0 {
		t.Fatalf("%d long-lived requests open with a unary RPC, a client stream and a Watch, want 0", n)
	}
	end := openStream(t, client)
	if n := r.srv.Stats().LongLivedOpen; n != 1 {
		t.Fatalf("%d long-lived requests open with a server stream too, want 1", n)
	}

	r.stop()
	wantLeft(t, "the server stream", testutil.Receive(t, "the server stream's end", end).err)
	if resp, err := watch.Recv(); err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Fatalf("Watch after the delay = %v, %v; want NOT_SERVING", resp, err)
	}
	if _, err := watch.Recv(); err != io.EOF {
		t.Fatalf("Watch did not end cleanly after NOT_SERVING: %v", err)
	}
	if _, err := input.CloseAndRecv(); err != nil {
		t.Fatalf("client stream after the server stream was asked: %v", err)
	}
	if err := testutil.Receive(t, "the unary RPC", unary); err != nil {
		t.Fatalf("unary RPC in flight as the server stream was asked: %v", err)
	}
	if err := r.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if st := r.srv.Stats(); st.LongLivedAsked != 1 || st.LongLivedLeft != 1 || st.LongLivedCut != 0 {
		t.Fatalf("long-lived asked %d, left %d, cut %d; want the server stream alone: 1, 1, 0", st.LongLivedAsked, st.LongLivedLeft, st.LongLivedCut)
	}
}

// A caller's own stream interceptors still run, in grpc-go's order
// (grpc.StreamInterceptor's first, then grpc.ChainStreamInterceptor's,
// whatever the order of the options), around grpcdrain's: they see the
// status the client gets, UNAVAILABLE, at the stream's turn.
func TestCallersStreamInterceptorsRun(t *testing.T) {
	var mu sync.Mutex
	var calls []string
	note := func(call string) {
		mu.Lock()
		defer mu.Unlock()
		calls = append(calls, call)
	}
	record := func(name string) grpc.StreamServerInterceptor {
		return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
			if info.FullMethod != testpb.TestService_StreamingOutputCall_FullMethodName {
				return handler(srv, ss)
			}
			note(name + " in")
			err := handler(srv, ss)
			note(name + " out " + status.Code(err).String())
			return err
		}
	}
	opts := []grpc.ServerOption{grpc.ChainStreamInterceptor(record("chained")), grpc.StreamInterceptor(record("single"))}
	r := startWith(t, true, opts, func(c *health.Config) { c.LeaveWindow = health.NoLeaveWindow })
	end := openStream(t, testpb.NewTestServiceClient(r.conn))
	r.stop()
	wantLeft(t, "the stream", testutil.Receive(t, "the stream's end", end).err)
	if err := r.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []string{"single in", "chained in", "chained out Unavailable", "single out Unavailable"}
	if strings.Join(calls, ", ") != strings.Join(want, ", ") {
		t.Fatalf("interceptor calls %q, want %q", calls, want)
	}
}
