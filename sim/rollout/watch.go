package rollout

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/sim/cluster"
)

// grpcWatch is the app's Watch RPC, by its name on the wire: the counter's
// values after the request's, as a server stream.
const grpcWatch = "/drainwell.example.v1.Counter/Watch"

// watcher is one client that watches the counter through the Service. It
// resumes after every reconnection from the last value it saw (SSE's
// Last-Event-ID, Watch's after), and checks that each value follows the
// last. A server that does not resume shows as values missed.
type watcher struct {
	kind string // "sse" or "grpc"

	mu       sync.Mutex
	last     int64
	missed   int64       // values skipped over
	dups     int64       // values seen again, or out of order
	starts   []time.Time // each stream's first event
	failures int         // attempts that failed before their first event
}

// see records value v.
func (w *watcher) see(v int64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch {
	case v == w.last+1:
	case v > w.last+1:
		w.missed += v - w.last - 1
	default:
		w.dups++
		return
	}
	w.last = v
}

func (w *watcher) started() {
	w.mu.Lock()
	w.starts = append(w.starts, time.Now())
	w.mu.Unlock()
}

func (w *watcher) failed() {
	w.mu.Lock()
	w.failures++
	w.mu.Unlock()
}

func (w *watcher) lastSeen() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.last
}

// retryAfter is how long a watcher waits before it tries again after a
// failed attempt.
const retryAfter = 200 * time.Millisecond

// sseRetry is how long an SSE watcher waits before it reconnects after a
// stream ended, unless the server said otherwise (retry:). It is
// EventSource's default in the browsers (3 s).
const sseRetry = 3 * time.Second

// watchSSE keeps w watching GET /watch at base until ctx ends.
func watchSSE(ctx context.Context, client *http.Client, base string, w *watcher) {
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/watch", nil)
		req.Header.Set("Last-Event-ID", strconv.FormatInt(w.lastSeen(), 10))
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				w.failed()
				sleepCtx(ctx, retryAfter)
			}
			continue
		}
		if resp.StatusCode != http.StatusOK {
			resp.Body.Close()
			w.failed()
			sleepCtx(ctx, retryAfter)
			continue
		}
		retry, err := readEvents(resp.Body, w)
		resp.Body.Close()
		if err != nil && ctx.Err() == nil {
			w.failed()
		}
		sleepCtx(ctx, retry)
	}
}

// readEvents reads an SSE stream into w until it ends, and returns how
// long to wait before reconnecting.
func readEvents(body io.Reader, w *watcher) (retry time.Duration, _ error) {
	retry = sseRetry
	sc := bufio.NewScanner(body)
	first := true
	for sc.Scan() {
		line := sc.Text()
		if ms, ok := strings.CutPrefix(line, "retry: "); ok {
			if n, err := strconv.Atoi(ms); err == nil {
				retry = time.Duration(n) * time.Millisecond
			}
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			continue
		}
		v, err := strconv.ParseInt(data, 10, 64)
		if err != nil {
			return retry, fmt.Errorf("event data %q: %w", data, err)
		}
		if first {
			w.started()
			first = false
		}
		w.see(v)
	}
	if err := sc.Err(); err != nil {
		return retry, err
	}
	return retry, nil
}

// watchGRPC keeps w watching the Watch RPC on cc until ctx ends.
func watchGRPC(ctx context.Context, cc *grpc.ClientConn, w *watcher) {
	desc := &grpc.StreamDesc{StreamName: "Watch", ServerStreams: true}
	for ctx.Err() == nil {
		stream, err := cc.NewStream(ctx, desc, grpcWatch)
		if err == nil {
			err = stream.SendMsg(wrapperspb.Int64(w.lastSeen()))
		}
		if err == nil {
			err = stream.CloseSend()
		}
		first := true
		for err == nil {
			v := new(wrapperspb.Int64Value)
			if err = stream.RecvMsg(v); err != nil {
				break
			}
			if first {
				w.started()
				first = false
			}
			w.see(v.Value)
		}
		if ctx.Err() != nil {
			return
		}
		if first { // no event: a failed attempt; back off as a client would
			w.failed()
			sleepCtx(ctx, retryAfter)
		}
	}
}

// watchers runs p's watchers through the Service until stop is called,
// which waits for them to end.
type watchers struct {
	all      []*watcher
	cancel   context.CancelFunc
	wg       sync.WaitGroup
	conns    []*grpc.ClientConn
	stopOnce sync.Once
}

func startWatchers(httpAddr, grpcAddr string, p Profile) (*watchers, error) {
	ctx, cancel := context.WithCancel(context.Background())
	ws := &watchers{cancel: cancel}
	for range p.Watchers {
		w := &watcher{kind: "sse"}
		ws.all = append(ws.all, w)
		// Each watcher is a client of its own: its own connection, routed
		// by the Service's view when it connects.
		client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		ws.wg.Go(func() { watchSSE(ctx, client, "http://"+httpAddr, w) })
	}
	for range p.GRPCWatchers {
		cc, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			ws.stop()
			return nil, err
		}
		ws.conns = append(ws.conns, cc)
		w := &watcher{kind: "grpc"}
		ws.all = append(ws.all, w)
		ws.wg.Go(func() { watchGRPC(ctx, cc, w) })
	}
	return ws, nil
}

// caughtUp reports whether every watcher has seen value n.
func (ws *watchers) caughtUp(n int64) bool {
	for _, w := range ws.all {
		if w.lastSeen() < n {
			return false
		}
	}
	return true
}

// stop ends the watchers and waits for them, once (Run stops them before
// the last drain, and on every early return).
func (ws *watchers) stop() {
	ws.stopOnce.Do(func() {
		ws.cancel()
		ws.wg.Wait()
		for _, cc := range ws.conns {
			cc.Close()
		}
	})
}

// WatchStats is what the watchers saw over a run.
type WatchStats struct {
	Watchers   int
	Missed     int64 // values a watcher skipped over, summed
	Duplicated int64 // values a watcher saw twice or out of order, summed
	Behind     int   // watchers that had not seen the final value
	Reconnects int   // streams begun after each watcher's first
	// PeakPerSecond is the most reconnections that began in one second
	// of the run, over every watcher.
	PeakPerSecond int
	Failures      int // attempts that failed before their first event
}

func (ws *watchers) stats(final int64, start time.Time) WatchStats {
	st := WatchStats{Watchers: len(ws.all)}
	perSecond := map[int]int{}
	for _, w := range ws.all {
		w.mu.Lock()
		st.Missed += w.missed
		st.Duplicated += w.dups
		st.Failures += w.failures
		if w.last < final {
			st.Behind++
			st.Missed += final - w.last
		}
		for _, t := range w.starts[min(1, len(w.starts)):] {
			st.Reconnects++
			perSecond[int(t.Sub(start)/time.Second)]++
		}
		w.mu.Unlock()
	}
	for _, n := range perSecond {
		st.PeakPerSecond = max(st.PeakPerSecond, n)
	}
	return st
}

// watchUntilSettled waits until the counter has stopped moving for two
// seconds and every watcher has seen its value (at most 30 seconds), then
// says what the watchers saw.
func watchUntilSettled(ctx context.Context, redis *harness.Redis, ws *watchers, start time.Time) WatchStats {
	deadline := time.Now().Add(30 * time.Second)
	var count int64 = -1
	stableSince := time.Now()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		n, err := redis.Count(ctx)
		if err == nil && n != count {
			count, stableSince = n, time.Now()
		}
		if count >= 0 && time.Since(stableSince) >= 2*time.Second && ws.caughtUp(count) {
			break
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
	return ws.stats(max(count, 0), start)
}

// reconnectBound is the most reconnections a second that the spread
// allows. A draining pod asks its watchers to leave over its leave window.
// At worst every pod's window overlaps (a delete of every pod, or a rolling
// update faster than a drain), so every watcher is asked within one
// window: n over its length a second. An SSE client then waits the
// server's retry: hint (0.5-1 s in the app) before it reconnects, and a
// gRPC one does not wait. So one second's reconnections come from up to
// 1.5 s of asking. Two more allow for watchers that landed on a pod that
// drains next. A control without a window is held to the same bound.
func reconnectBound(p Profile, spec cluster.Spec, env map[string]string) int {
	get := setting(env, spec)
	window := p.LeaveWindow
	if window <= 0 {
		window, _ = time.ParseDuration(get("LEAVE_WINDOW")) // the manifest's
	}
	if window <= 0 {
		timeout, _ := time.ParseDuration(get("SHUTDOWN_TIMEOUT"))
		delay, _ := time.ParseDuration(get("DRAIN_DELAY"))
		if timeout <= 0 {
			timeout = 25 * time.Second
		}
		end := timeout - min(timeout/10, time.Second) // the steps' end: health.Config.LeaveWindow
		window = (end - max(delay, 0)) / 2
	}
	return int(math.Ceil(1.5*float64(p.Watchers+p.GRPCWatchers)/window.Seconds())) + 2
}
