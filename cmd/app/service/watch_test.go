package service

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/drainwell/drainwell/cmd/app/counter"
	"github.com/drainwell/drainwell/cmd/app/internal/redistest"
	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
)

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// newService returns the service on c, its increments applied at once.
func newService(c counter.Counter) *service {
	return &service{log: discardLog(), counter: c, run: func(f func(context.Context)) error {
		go f(context.Background())
		return nil
	}}
}

// pods returns two services ("pods") on one shared count: the same Memory
// counter, or two Redis clients of one real redis-server.
func pods(t *testing.T, kind string) (a, b *service, incr func(n int)) {
	t.Helper()
	var ca, cb counter.Counter
	switch kind {
	case "memory":
		m := &counter.Memory{}
		ca, cb = m, m
	case "redis":
		addr, _ := redistest.Start(t)
		ra, rb := counter.NewRedis(addr, ""), counter.NewRedis(addr, "")
		t.Cleanup(func() { ra.Close(); rb.Close() })
		ca, cb = ra, rb
	}
	var reqs atomic.Int64
	return newService(ca), newService(cb), func(n int) {
		t.Helper()
		for range n {
			if err := cb.Incr(context.Background(), "req"+strconv.FormatInt(reqs.Add(1), 10)); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

// sseEvent is one event block of a server-sent events stream, or a
// comment line.
type sseEvent struct{ id, event, data, retry, comment string }

// openWatch GETs url with Last-Event-ID lastID (unless empty) and parses
// the stream's events onto the channel, closed when the stream ends.
// cancel hangs up.
func openWatch(t *testing.T, url, lastID string) (resp *http.Response, events <-chan sseEvent, cancel func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("GET %s: %s %s", url, resp.Status, b)
	}
	ch := make(chan sseEvent, 10000)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(resp.Body)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				if ev != (sseEvent{}) {
					ch <- ev
				}
				ev = sseEvent{}
				continue
			}
			if strings.HasPrefix(line, ":") {
				ch <- sseEvent{comment: line}
				continue
			}
			k, v, _ := strings.Cut(line, ": ")
			switch k {
			case "id":
				ev.id = v
			case "event":
				ev.event = v
			case "data":
				ev.data = v
			case "retry":
				ev.retry = v
			}
		}
	}()
	return resp, ch, cancel
}

// next returns the stream's next event, skipping comments; ok is false
// when the stream ended.
func next(t *testing.T, events <-chan sseEvent) (ev sseEvent, ok bool) {
	t.Helper()
	for {
		select {
		case ev, ok = <-events:
			if ok && ev.comment != "" {
				continue
			}
			return ev, ok
		case <-time.After(testutil.Patience):
			t.Fatalf("no event within %s", testutil.Patience)
			return ev, false
		}
	}
}

// values reads n events and returns their values, checking that each id
// is its data.
func values(t *testing.T, events <-chan sseEvent, n int) []int64 {
	t.Helper()
	var got []int64
	for range n {
		ev, ok := next(t, events)
		if !ok {
			t.Fatalf("stream ended after %v", got)
		}
		v, err := strconv.ParseInt(ev.data, 10, 64)
		if ev.event != "" || ev.id != ev.data || err != nil {
			t.Fatalf("event %+v after %v: want id: n, data: n", ev, got)
		}
		got = append(got, v)
	}
	return got
}

func seq(from, to int64) []int64 {
	var out []int64
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

// A watch resumes after the event it is given, on any pod: ?after=n gives
// n+1, n+2, ... in order, then the new ones as they are applied; a
// reconnection to the other pod with Last-Event-ID gets exactly the events
// it had not seen, even with ?after= still in its URL; a watch with
// neither starts at the next increment.
func TestWatchResume(t *testing.T) {
	for _, kind := range []string{"memory", "redis"} {
		t.Run(kind, func(t *testing.T) {
			a, b, incr := pods(t, kind)
			urlA, urlB := serve(t, a.routes())+"/watch", serve(t, b.routes())+"/watch"
			incr(5)

			_, events, hangUp := openWatch(t, urlA+"?after=2", "")
			if got := values(t, events, 3); !slices.Equal(got, seq(3, 5)) {
				t.Fatalf("?after=2: %v, want 3..5", got)
			}
			incr(2)
			if got := values(t, events, 2); !slices.Equal(got, seq(6, 7)) {
				t.Fatalf("?after=2, then 2 increments: %v, want 6, 7", got)
			}
			hangUp()
			incr(3) // while the client is away

			// The EventSource keeps its URL and adds Last-Event-ID.
			_, events, _ = openWatch(t, urlB+"?after=2", "7")
			if got := values(t, events, 3); !slices.Equal(got, seq(8, 10)) {
				t.Fatalf("resumed on the other pod after 7: %v, want 8..10", got)
			}
			incr(1)
			if got := values(t, events, 1); !slices.Equal(got, []int64{11}) {
				t.Fatalf("then: %v, want 11", got)
			}

			_, events, _ = openWatch(t, urlA+"?after=0", "")
			if got := values(t, events, 11); !slices.Equal(got, seq(1, 11)) {
				t.Fatalf("?after=0: %v, want 1..11", got)
			}

			// No resume point: the events from now on. The count is read
			// before the response starts, so the increment after it is
			// the first event.
			_, events, _ = openWatch(t, urlB, "")
			incr(1)
			if got := values(t, events, 1); !slices.Equal(got, []int64{12}) {
				t.Fatalf("a new watch: %v, want 12 first", got)
			}
		})
	}
}

// The stream's bytes: its headers, each event as "id: n\ndata: n\n\n" and
// flushed on its own, a keep-alive comment when it is silent, and the
// missed events said as such, with the ID to resume after.
func TestWatchFormat(t *testing.T) {
	c := &gapCounter{missingUpTo: 2}
	s := newService(c)
	s.watchPing = 50 * time.Millisecond
	url := serve(t, s.routes())
	for range 4 {
		_ = c.Incr(context.Background(), "")
	}
	resp := openWatchRaw(t, url+"/watch?after=0")
	if ct, cc := resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"); ct != "text/event-stream" || cc != "no-store" {
		t.Errorf("Content-Type %q, Cache-Control %q; want text/event-stream, no-store", ct, cc)
	}
	want := "event: missed\nid: 2\ndata: {\"from\":1,\"to\":2}\n\n" +
		"id: 3\ndata: 3\n\nid: 4\ndata: 4\n\n" +
		": ping\n\n"
	got := make([]byte, len(want))
	if _, err := io.ReadFull(resp.Body, got); err != nil || string(got) != want {
		t.Fatalf("stream %q (%v), want %q", got, err, want)
	}
	// The next increment comes as its event, after any number of pings.
	_ = c.Incr(context.Background(), "")
	r := bufio.NewReader(resp.Body)
	var rest string
	for !strings.HasSuffix(rest, "id: 5\ndata: 5\n\n") {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended after %q: %v", rest, err)
		}
		rest += line
	}
	if pings := strings.ReplaceAll(strings.TrimSuffix(rest, "id: 5\ndata: 5\n\n"), ": ping\n\n", ""); pings != "" {
		t.Fatalf("then %q, want pings and event 5", rest)
	}
}

// openWatchRaw GETs url and returns the response, its body unread.
func openWatchRaw(t *testing.T, url string) *http.Response {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return resp
}

// gapCounter is a Memory counter whose log no longer keeps the events up
// to missingUpTo, as a trimmed Redis stream.
type gapCounter struct {
	counter.Memory
	missingUpTo int64
}

func (g *gapCounter) After(ctx context.Context, after int64) ([]int64, error) {
	if after < g.missingUpTo {
		return nil, &counter.MissedError{From: after + 1, To: g.missingUpTo}
	}
	return g.Memory.After(ctx, after)
}

// At its turn in the drain (a real health.Server, asked to drain as a
// signal would) a watch stream sends a retry: hint, a short delay with
// jitter, and ends; the drain counts it as left, not cut, and ends clean.
func TestWatchLeavesAtItsTurn(t *testing.T) {
	c := &counter.Memory{}
	s := newService(c)
	srv := health.New(health.Config{Addr: "127.0.0.1:0", DrainDelay: health.NoDrainDelay, ShutdownTimeout: 10 * time.Second,
		LeaveWindow: health.NoLeaveWindow, IdleClose: 50 * time.Millisecond, Logger: discardLog()}, s.routes())
	s.longLived, s.run = srv.LongLived, srv.TryGo
	ctx, drain := context.WithCancel(context.Background())
	defer drain()
	ran := make(chan error, 1)
	go func() { ran <- srv.Run(ctx) }()
	testutil.WaitFor(t, "the server to listen", func() bool { return srv.Addr() != nil })
	_ = c.Incr(context.Background(), "")
	_, events, _ := openWatch(t, "http://"+srv.Addr().String()+"/watch?after=0", "")
	if got := values(t, events, 1); !slices.Equal(got, []int64{1}) {
		t.Fatalf("events %v, want [1]", got)
	}
	drain()
	ev, ok := next(t, events)
	if !ok || ev.retry == "" || ev.id != "" || ev.data != "" {
		t.Fatalf("at its turn the stream sent %+v (open %v), want a retry: hint alone", ev, ok)
	}
	if ms, err := strconv.Atoi(ev.retry); err != nil || ms < int(WatchRetry.Milliseconds()) || ms >= int((WatchRetry+WatchRetryJitter).Milliseconds()) {
		t.Errorf("retry: %s, want %s plus up to %s, in ms", ev.retry, WatchRetry, WatchRetryJitter)
	}
	if ev, ok := next(t, events); ok {
		t.Fatalf("after the retry: hint the stream sent %+v, want its end", ev)
	}
	if err := testutil.Receive(t, "Run to return", ran); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if st := srv.Stats(); st.LongLivedAsked != 1 || st.LongLivedLeft != 1 || st.LongLivedCut != 0 {
		t.Errorf("asked %d, left %d, cut %d; want 1, 1, 0", st.LongLivedAsked, st.LongLivedLeft, st.LongLivedCut)
	}
}

// A client that hangs up ends its watch's handler, which says it left:
// whether it waited for events or for its keep-alive.
func TestWatchEndsWhenTheClientGoesAway(t *testing.T) {
	for _, tt := range []struct {
		name string
		ping time.Duration
	}{{"waiting for events", 0}, {"between keep-alives", 10 * time.Millisecond}} {
		t.Run(tt.name, func(t *testing.T) {
			s := newService(&counter.Memory{})
			s.watchPing = tt.ping
			var declared, left atomic.Int64
			s.longLived = func(ctx context.Context) (context.Context, func()) {
				declared.Add(1)
				return ctx, func() { left.Add(1) }
			}
			_, _, hangUp := openWatch(t, serve(t, s.routes())+"/watch", "")
			if declared.Load() != 1 {
				t.Fatalf("the watch declared itself long-lived %d times, want once before its response", declared.Load())
			}
			hangUp()
			testutil.WaitFor(t, "the handler to leave", func() bool { return left.Load() == 1 })
		})
	}
}

func TestWatchBadRequests(t *testing.T) {
	url := serve(t, newService(&counter.Memory{}).routes()) + "/watch"
	for _, tt := range []struct {
		name, method, query, lastID string
		want                        int
	}{
		{"POST", http.MethodPost, "", "", http.StatusMethodNotAllowed},
		{"Last-Event-ID not a number", http.MethodGet, "", "abc", http.StatusBadRequest},
		{"Last-Event-ID negative", http.MethodGet, "", "-1", http.StatusBadRequest},
		{"after not a number", http.MethodGet, "?after=x", "", http.StatusBadRequest},
		{"after negative", http.MethodGet, "?after=-5", "", http.StatusBadRequest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, url+tt.query, nil)
			if tt.lastID != "" {
				req.Header.Set("Last-Event-ID", tt.lastID)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tt.want {
				t.Fatalf("%s: %s, want %d", tt.name, resp.Status, tt.want)
			}
		})
	}
	// A counter that keeps no events.
	resp, err := http.Get(serve(t, newService(fakeCounter{}).routes()) + "/watch")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotImplemented {
		t.Fatalf("a counter without events: %s, want 501", resp.Status)
	}
}

// grpcServe serves s's gRPC API on loopback and returns a client
// connection, and the handlers' returns.
func grpcServe(t *testing.T, s *service) (*grpc.ClientConn, <-chan error) {
	t.Helper()
	returned := make(chan error, 10)
	gs := grpc.NewServer(grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		returned <- err
		return err
	}))
	s.registerGRPC(gs)
	ln := testutil.Listen(t)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, returned
}

// grpcWatchStream opens Watch(after), for at most testutil.Patience: a
// handler that sends nothing fails the test, and does not hang it.
func grpcWatchStream(t *testing.T, ctx context.Context, conn *grpc.ClientConn, after int64) grpc.ClientStream {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, testutil.Patience)
	t.Cleanup(cancel)
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ServerStreams: true}, GRPCWatch)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.SendMsg(wrapperspb.Int64(after)); err != nil {
		t.Fatal(err)
	}
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}
	return st
}

func recvValues(t *testing.T, st grpc.ClientStream, n int) []int64 {
	t.Helper()
	var got []int64
	for range n {
		m := new(wrapperspb.Int64Value)
		if err := st.RecvMsg(m); err != nil {
			t.Fatalf("Watch ended after %v: %v", got, err)
		}
		got = append(got, m.GetValue())
	}
	return got
}

// gRPC Watch: the values after `after`, in order, then the new ones, on
// either pod; the handler returns when the client cancels. Bad input and
// events no longer kept end it with their codes.
func TestGRPCWatch(t *testing.T) {
	for _, kind := range []string{"memory", "redis"} {
		t.Run(kind, func(t *testing.T) {
			a, b, incr := pods(t, kind)
			connA, returnedA := grpcServe(t, a)
			connB, _ := grpcServe(t, b)
			incr(5)
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			st := grpcWatchStream(t, ctx, connA, 2)
			if got := recvValues(t, st, 3); !slices.Equal(got, seq(3, 5)) {
				t.Fatalf("Watch(2): %v, want 3..5", got)
			}
			incr(1)
			if got := recvValues(t, st, 1); !slices.Equal(got, []int64{6}) {
				t.Fatalf("then: %v, want 6", got)
			}
			cancel()
			if err := testutil.Receive(t, "Watch's handler to return", returnedA); status.Code(err) != codes.Canceled {
				t.Fatalf("Watch's handler returned %v, want CANCELLED", err)
			}
			incr(2)
			st = grpcWatchStream(t, context.Background(), connB, 6)
			if got := recvValues(t, st, 2); !slices.Equal(got, seq(7, 8)) {
				t.Fatalf("resumed on the other pod, Watch(6): %v, want 7, 8", got)
			}
		})
	}
	for _, tt := range []struct {
		name  string
		c     counter.Counter
		after int64
		want  codes.Code
	}{
		{"negative", &counter.Memory{}, -1, codes.InvalidArgument},
		{"no events kept", fakeCounter{}, 0, codes.Unimplemented},
		{"missed", &gapCounter{missingUpTo: 3}, 1, codes.OutOfRange},
	} {
		t.Run(tt.name, func(t *testing.T) {
			conn, _ := grpcServe(t, newService(tt.c))
			st := grpcWatchStream(t, context.Background(), conn, tt.after)
			err := st.RecvMsg(new(wrapperspb.Int64Value))
			if status.Code(err) != tt.want {
				t.Fatalf("Watch(%d): %v, want %s", tt.after, err, tt.want)
			}
			if tt.want == codes.OutOfRange && !strings.Contains(err.Error(), "resume after 3") {
				t.Errorf("OUT_OF_RANGE says %q, want where to resume", err)
			}
		})
	}
}
