package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainwell/drainwell/internal/testutil"
)

// The drain's figures: phases in order, requests after the signal and the
// last one's time, connections by how they ended, tasks, the end; the
// late-traffic warning names DRAIN_DELAY only when a request came in the
// delay's last fifth; one report line at exit.
func TestStatsAndDrainReport(t *testing.T) {
	tests := []struct {
		name     string
		lastAt   time.Duration // when the last request after the signal comes
		probesAt time.Duration // when the kubelet probes /ready and /live on the main listener (0: never)
		reused   bool          // the last request reuses a keep-alive connection opened before the signal
		wantWarn bool
	}{
		{"traffic until the end of the delay", testDrainDelay - testDrainDelay/10, 0, false, true},
		{"control: traffic stopped early", testDrainDelay / 5, 0, false, false},
		// Probes are not traffic: they neither count nor warn.
		{"probes late in the delay", testDrainDelay / 5, testDrainDelay - testDrainDelay/10, false, false},
		// A keep-alive connection opened before the signal was routed
		// before it: its late request says nothing of the endpoint lag
		// (the heavy rollout profile warned on one, 4.1 s in).
		{"late on a connection from before the signal", testDrainDelay - testDrainDelay/10, 0, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				var logs testutil.Buffer
				h := newHarness(t, nil, func(c *Config) { c.Logger = slog.New(slog.NewTextHandler(&logs, nil)) }).start()
				idle := h.dial(h.url)
				idle.Get("/work") // a keep-alive connection, idle from now on
				old := h.dial(h.url)
				old.Get("/work")
				release := make(chan struct{})
				h.srv.TryGo(func(context.Context) { <-release })
				if st := h.srv.Stats(); st.State != StateReady || len(st.Phases) != 0 || !st.DrainStarted.IsZero() {
					t.Fatalf("before the signal: %+v", st)
				}
				h.signal()
				h.at(tt.lastAt)
				conn := old
				if !tt.reused {
					conn = h.dial(h.url)
				}
				if resp := conn.Get("/work"); !resp.Close {
					t.Fatal("no Connection: close during the delay")
				}
				if tt.probesAt > 0 {
					h.at(tt.probesAt)
					for _, path := range []string{"/ready", "/live"} {
						if code, _, _ := h.get(h.url + path); code != 200 {
							t.Fatalf("%s during the delay = %d, want 200", path, code)
						}
					}
				}
				h.at(testDrainDelay)
				if err := idle.WaitClosed(0); err != nil {
					t.Fatalf("when the delay ended: the idle connection: %v", err)
				}
				close(release)
				if err := h.wait(); err != nil {
					t.Fatal(err)
				}
				st := h.srv.Stats()
				var names []string
				for _, p := range st.Phases {
					names = append(names, string(p.Phase))
				}
				if got := strings.Join(names, ","); got != "delay,connections,requests,background_work,hooks" {
					t.Fatalf("phases %s", got)
				}
				if st.Phases[0].Duration != testDrainDelay {
					t.Fatalf("delay phase %s, want %s", st.Phases[0].Duration, testDrainDelay)
				}
				wantLast := st.DrainStarted.Add(tt.lastAt)
				if tt.reused {
					wantLast = time.Time{}
				}
				if st.RequestsAfterSignal != 1 || !st.LastRequestAfterSignal.Equal(wantLast) {
					t.Fatalf("requests after the signal %d, the last on a new connection at %s; want 1 at +%s (reused %v)", st.RequestsAfterSignal, st.LastRequestAfterSignal, tt.lastAt, tt.reused)
				}
				wantAfter := int64(1) // the request's; each probe's connection too
				wantIdle := int64(1)  // idle's
				if !tt.reused {
					wantIdle++ // and old's, idle since
				}
				if tt.probesAt > 0 {
					wantAfter += 2
				}
				if st.ConnsClosedIdle != wantIdle || st.ConnsClosedAfterResponse != wantAfter || st.ConnsCutAtDeadline != 0 {
					t.Fatalf("connections: idle %d, after response %d, cut %d; want %d, %d, 0", st.ConnsClosedIdle, st.ConnsClosedAfterResponse, st.ConnsCutAtDeadline, wantIdle, wantAfter)
				}
				if st.TasksStarted != 1 || st.TasksRunning != 0 || st.TasksAbandoned != 0 || st.End != "clean" || st.State != StateStopped {
					t.Fatalf("end: %+v", st)
				}
				logged := logs.String()
				if warned := strings.Contains(logged, "raise DRAIN_DELAY"); warned != tt.wantWarn {
					t.Fatalf("late-traffic warning %v, want %v:\n%s", warned, tt.wantWarn, logged)
				}
				if n := logs.Count(`msg="drain report"`); n != 1 ||
					!strings.Contains(logged, "end=clean") || !strings.Contains(logged, "phase_delay=5s") {
					t.Fatalf("want one drain report line with end=clean and phase_delay=5s:\n%s", logged)
				}
			})
		})
	}
}

func TestStatsAtTheDeadline(t *testing.T) { inBubble(t, testStatsAtTheDeadline) }

func testStatsAtTheDeadline(t *testing.T) {
	h := newHarness(t, nil).start()
	h.srv.TryGo(func(ctx context.Context) { <-ctx.Done() })
	h.signal()
	h.at(testDrainDelay)
	if n := len(h.srv.Stats().Phases); n != 3 {
		t.Fatalf("%d phases done when the delay ended, want 3 (waiting on work)", n)
	}
	if err := h.wait(); !errors.Is(err, ErrShutdownTimeout) {
		t.Fatal(err)
	}
	if st := h.srv.Stats(); st.End != "deadline" || st.TasksAbandoned != 1 {
		t.Fatalf("end %q, abandoned %d; want deadline, 1", st.End, st.TasksAbandoned)
	}
}

// With CheckInterval the checks run in the background, /ready answers their
// last result without running them, and OnReadyChange hears each change;
// without it (the control) each /ready runs them.
func TestBackgroundChecks(t *testing.T) {
	for _, interval := range []time.Duration{20 * time.Millisecond, 0} {
		t.Run(fmt.Sprintf("interval %s", interval), func(t *testing.T) {
			inBubble(t, func(t *testing.T) { testBackgroundChecks(t, interval) })
		})
	}
}

func testBackgroundChecks(t *testing.T, interval time.Duration) {
	var mu sync.Mutex
	var changes []string
	var calls int
	var failing bool
	h := newHarness(t, nil, func(c *Config) {
		c.DrainDelay, c.CheckInterval = -1, interval
		c.OnReadyChange = func(ready bool, reason string) {
			mu.Lock()
			defer mu.Unlock()
			changes = append(changes, reason)
		}
	})
	h.srv.AddCheck("db", func(context.Context) error {
		mu.Lock()
		defer mu.Unlock()
		calls++
		if failing {
			return errors.New("down")
		}
		return nil
	})
	ctx, stop := context.WithCancel(context.Background())
	ln := h.listen()
	h.serve(ctx, ln)
	url := "http://" + ln.Addr().String()
	testutil.WaitFor(t, "ready", func() bool { code, _, _ := h.get(url + "/ready"); return code == 200 })
	mu.Lock()
	before := calls
	mu.Unlock()
	for range 50 { // within an instant of the bubble's clock
		h.get(url + "/ready")
	}
	mu.Lock()
	want := 0 // answered from the background result
	if interval == 0 {
		want = 50
	}
	if calls-before != want {
		t.Errorf("50 /ready ran the check %d times, want %d", calls-before, want)
	}
	failing = true
	mu.Unlock()
	testutil.WaitFor(t, "not ready", func() bool { code, _, _ := h.get(url + "/ready"); return code == 503 })
	mu.Lock()
	failing = false
	mu.Unlock()
	testutil.WaitFor(t, "ready again", func() bool { code, _, _ := h.get(url + "/ready"); return code == 200 })
	if st := h.srv.Stats(); len(st.Checks) != 1 || st.Checks[0].Name != "db" || !st.Checks[0].OK || st.Checks[0].At.IsZero() {
		t.Fatalf("check stats %+v", st.Checks)
	}
	stop()
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if got := strings.Join(changes, " | "); got != "ready | checks failed: db: down | ready | draining: serving until the listeners close | draining: not serving" {
		t.Fatalf("OnReadyChange heard %q", got)
	}
}

// A connection cut at the deadline counts once, as cut, not also as closed
// after a response.
func TestCutConnectionsCountOnce(t *testing.T) { inBubble(t, testCutConnectionsCountOnce) }

func testCutConnectionsCountOnce(t *testing.T) {
	started := make(chan struct{}, 1)
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		<-r.Context().Done() // never answers
	})).start()
	failed := make(chan error, 1)
	go func() {
		resp, err := h.client.Get(h.url + "/block")
		if err == nil {
			resp.Body.Close()
		}
		failed <- err
	}()
	<-started
	h.signal()
	if err := h.wait(); !errors.Is(err, ErrShutdownTimeout) {
		t.Fatal(err)
	}
	if err := <-failed; err == nil {
		t.Fatal("the blocked request got an answer")
	}
	synctest.Wait() // the cut connection's close is seen
	if st := h.srv.Stats(); st.ConnsCutAtDeadline != 1 || st.ConnsClosedAfterResponse != 0 {
		t.Fatalf("cut %d, closed after response %d; want 1, 0", st.ConnsCutAtDeadline, st.ConnsClosedAfterResponse)
	}
}

// On demand, concurrent /ready calls share one run of the checks, and a
// check that ignores its context is not called again while its last call
// runs: 20 probes at once while it hangs cost one call and one goroutine
// (they cost 20, and more every probe, piling up).
func TestChecksCoalescedAndBounded(t *testing.T) { inBubble(t, testChecksCoalescedAndBounded) }

func testChecksCoalescedAndBounded(t *testing.T) {
	var calls atomic.Int64
	release := make(chan struct{})
	h := newHarness(t, nil)
	h.srv.AddCheck("stuck", func(context.Context) error {
		if calls.Add(1) > 1 {
			return nil
		}
		<-release // ignores its context
		return nil
	})
	h.start()
	codes := make(chan int, 20)
	for range 20 {
		go func() { code, _, _ := h.get(h.url + "/ready"); codes <- code }()
	}
	for range 20 {
		if code := <-codes; code != 503 {
			t.Fatalf("/ready = %d while its check hangs past CheckTimeout, want 503", code)
		}
	}
	if n := calls.Load(); n != 1 {
		t.Fatalf("20 concurrent /ready called the check %d times, want 1", n)
	}
	// Still hanging: not called again, still not ready.
	if code, _, body := h.get(h.url + "/ready?verbose"); code != 503 || !strings.Contains(body, "still running") || calls.Load() != 1 {
		t.Fatalf("/ready = %d %q with %d calls, want 503 saying the check still runs, 1 call", code, body, calls.Load())
	}
	close(release)
	synctest.Wait()
	if code, _, _ := h.get(h.url + "/ready"); code != 200 || calls.Load() != 2 {
		t.Fatalf("/ready = %d after the check returned (%d calls), want 200 and a new call", code, calls.Load())
	}
}
