package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drainwell/drainwell/internal/testutil"
)

// GET /watch across a drain, with the real app: two pods on one Redis,
// SSE clients watch pod A while every increment goes to pod B; A gets
// SIGTERM, and each stream ends at its turn with a retry: hint; each client
// waits as told and reconnects to B (as a Service would send it there),
// with Last-Event-ID. Every client must see every value 1..N exactly once,
// in order. The control reconnects without Last-Event-ID (a client that
// does not resume: it gets the events from then on) after increments went
// on while it was away, and must miss some: the check can fail.
func TestWatchResumesOnAnotherPod(t *testing.T) {
	r := startRedis(t)
	env := func() []string {
		return []string{"ADDR=127.0.0.1:0", "REDIS_ADDR=" + r.Addr, "LIVE_FILE=" + filepath.Join(t.TempDir(), "live"),
			"DRAIN_DELAY=500ms", "WORK_DELAY=0s", "SHUTDOWN_TIMEOUT=5s", "IDLE_CLOSE=100ms"}
	}
	a := start(t, bins["app"], env()...)
	b := start(t, bins["app"], env()...)
	urlA, urlB := "http://"+a.Addr, "http://"+b.Addr

	// The load: increments on B, one after another, until told to stop.
	var answered atomic.Int64
	stopLoad, loadDone := make(chan struct{}), make(chan error, 1)
	go func() {
		client := &http.Client{Timeout: 5 * time.Second}
		for {
			select {
			case <-stopLoad:
				loadDone <- nil
				return
			default:
			}
			resp, err := client.Post(urlB+"/incr", "text/plain", nil)
			if err != nil {
				loadDone <- err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				loadDone <- fmt.Errorf("POST /incr on B: %s", resp.Status)
				return
			}
			answered.Add(1)
			time.Sleep(2 * time.Millisecond)
		}
	}()

	ctx, stopWatching := context.WithCancel(context.Background())
	defer stopWatching()
	watchers := []*sseWatcher{{name: "resume 1", resume: true}, {name: "resume 2", resume: true},
		{name: "resume 3", resume: true}, {name: "control: no Last-Event-ID"}}
	var wg sync.WaitGroup
	for _, w := range watchers {
		wg.Go(func() { w.run(ctx, urlA, urlB) })
	}
	each := func(what string, cond func(w *sseWatcher) bool) {
		t.Helper()
		testutil.WaitFor(t, what, func() bool {
			for _, w := range watchers {
				if w.failed() != nil {
					return true // reported below
				}
				if !cond(w) {
					return false
				}
			}
			return true
		})
		for _, w := range watchers {
			if err := w.failed(); err != nil {
				t.Fatalf("%s: %v", w.name, err)
			}
		}
	}
	each("every client to see 20 events from A", func(w *sseWatcher) bool { return w.count(false) >= 20 })

	a.Signal(syscall.SIGTERM)
	each("every client to see 20 events from B", func(w *sseWatcher) bool { return w.count(true) >= 20 })
	close(stopLoad)
	if err := testutil.Receive(t, "the load to stop", loadDone); err != nil {
		t.Fatal(err)
	}
	n := answered.Load()
	testutil.WaitFor(t, "every answered increment to land", func() bool {
		c, err := r.Count(context.Background())
		return err == nil && c == n
	})
	each(fmt.Sprintf("every client to reach %d", n), func(w *sseWatcher) bool { return w.last() == n })
	stopWatching()
	wg.Wait()

	if code, err := a.Wait(20 * time.Second); err != nil || code != 0 {
		t.Fatalf("pod A exit %d %v, want 0\n%s", code, err, a.Stderr())
	}
	want := make([]int64, n)
	for i := range want {
		want[i] = int64(i) + 1
	}
	for _, w := range watchers {
		seen, onA, hint := w.result()
		ms, err := strconv.Atoi(hint)
		if err != nil || ms < 500 || ms >= 1000 {
			t.Errorf("%s: A's stream ended with retry: %q, want 500 to 999 (ms)", w.name, hint)
		}
		missed, twice := missedAndTwice(seen, n)
		t.Logf("%s: %d values (%d from A, then B), %d missed, %d twice", w.name, len(seen), onA, missed, twice)
		if w.resume && !slices.Equal(seen, want) {
			t.Errorf("%s: resumed with Last-Event-ID, and saw %d values, %d missed, %d twice, or out of order; want 1..%d once each",
				w.name, len(seen), missed, twice, n)
		}
		if !w.resume && missed == 0 && twice == 0 {
			t.Errorf("%s: saw every value once without Last-Event-ID: the check cannot fail", w.name)
		}
	}
}

// missedAndTwice counts the values of 1..n that seen lacks, and those it has more
// than once.
func missedAndTwice(seen []int64, n int64) (missed, twice int) {
	times := make(map[int64]int, len(seen))
	for _, v := range seen {
		times[v]++
	}
	for v := int64(1); v <= n; v++ {
		switch c := times[v]; {
		case c == 0:
			missed++
		case c > 1:
			twice += c - 1
		}
	}
	return missed, twice
}

// sseWatcher is a client of GET /watch: it watches pod A from the first
// event until A's stream ends, waits its retry: hint, and reconnects to
// pod B: with Last-Event-ID (resume), or with none.
type sseWatcher struct {
	name   string
	resume bool

	mu     sync.Mutex
	seen   []int64
	onA    int    // of seen, those from A
	hint   string // the retry: that ended A's stream
	onB    bool   // the stream in progress is B's
	err    error
	lastID string
}

func (w *sseWatcher) run(ctx context.Context, urlA, urlB string) {
	hint, err := w.stream(ctx, urlA+"/watch?after=0", "")
	if err != nil {
		w.fail(fmt.Errorf("watching A: %w", err))
		return
	}
	w.mu.Lock()
	w.hint, w.onB = hint, true
	last, lastID := w.lastLocked(), w.lastID
	w.mu.Unlock()
	ms, err := strconv.Atoi(hint)
	if err != nil {
		w.fail(fmt.Errorf("A's stream ended without a retry: hint (%q)", hint))
		return
	}
	time.Sleep(time.Duration(ms) * time.Millisecond)
	if !w.resume {
		lastID = ""
		// Increments go on while it is away (on a live service they
		// do): it reconnects once there has been one.
		for countAt(urlB) <= last {
			if ctx.Err() != nil {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if _, err := w.stream(ctx, urlB+"/watch", lastID); err != nil && ctx.Err() == nil {
		w.fail(fmt.Errorf("watching B: %w", err))
	}
}

// stream reads one watch stream until it ends, and returns the retry:
// hint it ended with, if any.
func (w *sseWatcher) stream(ctx context.Context, url, lastID string) (hint string, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		return "", fmt.Errorf("GET %s: %s %s", url, resp.Status, resp.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(resp.Body)
	var id, data, event string
	for sc.Scan() {
		line := sc.Text()
		k, v, _ := strings.Cut(line, ": ")
		switch {
		case line == "":
			if event != "" {
				return "", fmt.Errorf("event %q (%s) from %s", event, data, url)
			}
			if data != "" {
				n, err := strconv.ParseInt(data, 10, 64)
				if err != nil || id != data {
					return "", fmt.Errorf("event id %q data %q from %s", id, data, url)
				}
				w.mu.Lock()
				w.seen = append(w.seen, n)
				w.lastID = id
				if !w.onB {
					w.onA++
				}
				w.mu.Unlock()
			}
			id, data, event = "", "", ""
		case strings.HasPrefix(line, ":"): // keep-alive
		case k == "id":
			id = v
		case k == "data":
			data = v
		case k == "event":
			event = v
		case k == "retry":
			hint = v
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, context.Canceled) && ctx.Err() == nil {
		return hint, err
	}
	return hint, nil
}

func (w *sseWatcher) fail(err error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err == nil {
		w.err = err
	}
}

func (w *sseWatcher) failed() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// count returns how many events it has seen from A, or from B.
func (w *sseWatcher) count(fromB bool) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	if fromB {
		return len(w.seen) - w.onA
	}
	return w.onA
}

func (w *sseWatcher) last() int64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lastLocked()
}

func (w *sseWatcher) lastLocked() int64 {
	if len(w.seen) == 0 {
		return 0
	}
	return w.seen[len(w.seen)-1]
}

func (w *sseWatcher) result() (seen []int64, onA int, hint string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.seen), w.onA, w.hint
}

// countAt reads GET /count at url, or -1.
func countAt(url string) int64 {
	resp, err := http.Get(url + "/count")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	if err != nil {
		return -1
	}
	return n
}
