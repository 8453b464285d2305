package health

import (
	"context"
	"errors"
	_ "expvar" // registers /debug/vars on http.DefaultServeMux: TestConnContextChainedAndNilHandlers
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/probe"
)

// harness runs a Server on an in-memory network with a signal channel and
// a marker in a temporary folder. Made inside a testing/synctest bubble
// (inBubble), the drain's timers run on the bubble's clock: time moves
// only when the test sleeps (advance) or every goroutine waits, and
// synctest.Wait lets everything that can run settle, so that an absence
// is a look after the barrier, not a wait. The keep-alive race with real
// sockets is e2e's.
type harness struct {
	t         *testing.T
	srv       *Server
	net       *testutil.MemNet
	client    *http.Client // a connection per request
	sigs      chan os.Signal
	marker    string // Config.LiveFile
	url       string // the main listener's, once started
	result    chan error
	done      chan struct{} // closed when Serve has returned
	signalled time.Time     // when signal sent the first SIGTERM
}

const (
	testDrainDelay = 5 * time.Second
	testTimeout    = 25 * time.Second
	// testExpire is when the drain gives up on its phases: the deadline
	// less what it keeps for expiring (expireReserve).
	testExpire    = testTimeout - time.Second
	testIdleClose = time.Second
)

// inBubble runs f in a synctest bubble: the drain's tests are about time.
func inBubble(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, f)
}

func newHarness(t *testing.T, h http.Handler, mutate ...func(*Config)) *harness {
	t.Helper()
	memNet := &testutil.MemNet{}
	hs := &harness{
		t:      t,
		net:    memNet,
		client: memNet.Client(t),
		sigs:   make(chan os.Signal, 4),
		marker: filepath.Join(t.TempDir(), "live"),
		result: make(chan error, 1),
		done:   make(chan struct{}),
	}
	cfg := Config{
		DrainDelay:      testDrainDelay,
		ShutdownTimeout: testTimeout,
		IdleClose:       testIdleClose,
		LiveFile:        hs.marker,
		Logger:          slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	for _, f := range mutate {
		f(&cfg)
	}
	if h == nil && (cfg.HTTP == nil || cfg.HTTP.Handler == nil) {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") })
	}
	hs.srv = newServer(cfg, h, hs.sigs)
	return hs
}

// listen returns a listener of the harness's network, for AddHTTP and
// AddAdmin.
func (h *harness) listen() *testutil.MemListener { return h.net.Listen() }

func (h *harness) start() *harness {
	h.t.Helper()
	ln := h.listen()
	h.url = "http://" + ln.Addr().String()
	h.serve(context.Background(), ln)
	return h
}

// serve runs Serve in the background; the test's cleanup ends it with two
// signals if the test did not.
func (h *harness) serve(ctx context.Context, ln net.Listener) {
	h.t.Helper()
	go func() {
		h.result <- h.srv.Serve(ctx, ln)
		close(h.done)
	}()
	testutil.WaitFor(h.t, "ready", func() bool { return h.srv.State() == StateReady })
	h.t.Cleanup(func() {
		for {
			select {
			case <-h.done:
				return
			case h.sigs <- syscall.SIGTERM:
				time.Sleep(10 * time.Millisecond) // signals are not queued
			}
		}
	})
}

// signal sends SIGTERM and lets the drain begin: when it returns, the
// drain waits on its delay and deadline.
func (h *harness) signal() {
	h.t.Helper()
	h.signalled = time.Now()
	h.sigs <- syscall.SIGTERM
	synctest.Wait()
	if h.srv.State() != StateDraining && !h.returned() {
		h.t.Fatalf("state %s after the signal, want draining", h.srv.State())
	}
}

// advance moves the bubble's clock by d and lets what it woke settle.
func (h *harness) advance(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// at moves the bubble's clock to d after the signal (what ran meanwhile,
// such as net/http's 500 ms wait before it closes a connection after
// Connection: close, may have moved it already) and lets what it woke
// settle.
func (h *harness) at(d time.Duration) {
	h.t.Helper()
	if now := time.Since(h.signalled); now > d {
		h.t.Fatalf("the clock is at +%s, past +%s", now, d)
	}
	h.advance(time.Until(h.signalled.Add(d)))
}

func (h *harness) wait() error {
	h.t.Helper()
	return testutil.Receive(h.t, "Serve to return", h.result)
}

func (h *harness) returned() bool {
	select {
	case <-h.done:
		return true
	default:
		return false
	}
}

func (h *harness) markerExists() bool {
	_, err := os.Lstat(h.marker)
	return err == nil
}

// get asks url on a connection of its own.
func (h *harness) get(url string) (code int, header http.Header, body string) {
	h.t.Helper()
	resp, err := h.client.Get(url)
	if err != nil {
		h.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// dial opens a raw keep-alive connection to url's host.
func (h *harness) dial(url string) *testutil.RawConn {
	h.t.Helper()
	return h.net.DialRaw(h.t, hostOf(url))
}

// refused reports whether url's listener refuses connections.
func (h *harness) refused(url string) bool { return h.net.Refused(hostOf(url)) }

func hostOf(url string) string {
	_, host, _ := strings.Cut(url, "://")
	return host
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func TestDrainSequence(t *testing.T) {
	for _, policy := range []ReadinessPolicy{ReadyWhileServing, NotReadyAtSignal} {
		t.Run(policy.String(), func(t *testing.T) { inBubble(t, func(t *testing.T) { testDrainSequence(t, policy) }) })
	}
}

func testDrainSequence(t *testing.T, policy ReadinessPolicy) {
	var mu sync.Mutex
	var order []string
	record := func(s string) {
		mu.Lock()
		defer mu.Unlock()
		order = append(order, s)
	}
	h := newHarness(t, nil, func(c *Config) { c.DrainReadiness = policy }).start()
	if !h.markerExists() {
		t.Fatal("no marker while ready")
	}
	if code, _, _ := h.get(h.url + "/ready"); code != 200 {
		t.Fatalf("/ready = %d before the signal", code)
	}
	release := make(chan struct{})
	taskCtxErr := make(chan error, 1)
	if err := h.srv.TryGo(func(ctx context.Context) {
		<-release
		taskCtxErr <- ctx.Err()
		record("task")
	}); err != nil {
		t.Fatal(err)
	}
	h.srv.OnStop(func(context.Context) error { record("stop 1"); return nil })
	h.srv.OnStop(func(context.Context) error { record("stop 2"); return nil })

	h.signal()
	// ReadyWhileServing: still ready (serving, for Kubernetes' terminating
	// endpoints) and saying it drains; NotReadyAtSignal: not ready at
	// once, before any time passes.
	wantCode := map[ReadinessPolicy]int{ReadyWhileServing: 200, NotReadyAtSignal: 503}[policy]
	if code, _, body := h.get(h.url + "/ready"); code != wantCode || !strings.Contains(body, "draining") {
		t.Fatalf("/ready after the signal = %d %q, want %d draining", code, body, wantCode)
	}
	if got, want := isClosed(h.srv.NotReady()), policy == NotReadyAtSignal; got != want {
		t.Fatalf("NotReady closed at the signal = %v, want %v", got, want)
	}
	// Still serving during the drain delay, with Connection: close (asked
	// on a keep-alive connection: a client that asks to close gets it
	// anyway).
	if resp := h.dial(h.url).Get("/work"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("during the delay: %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if h.srv.State() != StateDraining {
		t.Fatalf("state %s, want draining", h.srv.State())
	}

	h.at(testDrainDelay - time.Nanosecond)
	if h.refused(h.url) || isClosed(h.srv.NotReady()) != (policy == NotReadyAtSignal) {
		t.Fatal("the listener closed, or readiness changed, before the drain delay ended")
	}
	h.advance(time.Nanosecond)
	if !h.refused(h.url) {
		t.Fatal("the listener still accepts after the drain delay")
	}
	if !isClosed(h.srv.NotReady()) {
		t.Fatal("NotReady still open after the listeners closed")
	}
	// The task still runs: no exit, the marker stays.
	if h.returned() || !h.markerExists() {
		t.Fatalf("drain ended before its background work: returned=%v marker=%v", h.returned(), h.markerExists())
	}
	close(release)
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v, want nil", err)
	}
	if err := <-taskCtxErr; err != nil {
		t.Fatalf("task context was cancelled during a clean drain: %v", err)
	}
	if h.markerExists() {
		t.Fatal("marker left after the drain")
	}
	if want := "task,stop 2,stop 1"; strings.Join(order, ",") != want {
		t.Fatalf("order %v, want %s", order, want)
	}
	if err := h.srv.TryGo(func(context.Context) {}); !errors.Is(err, ErrTooLate) {
		t.Fatalf("Go after the drain = %v, want ErrTooLate", err)
	}
	if h.srv.State() != StateStopped {
		t.Fatalf("state %s, want stopped", h.srv.State())
	}
}

func TestSecondSignalReturnsAtOnce(t *testing.T) { inBubble(t, testSecondSignalReturnsAtOnce) }

func testSecondSignalReturnsAtOnce(t *testing.T) {
	h := newHarness(t, nil).start()
	h.srv.TryGo(func(ctx context.Context) { <-ctx.Done() }) // would hold the drain
	h.signal()
	h.sigs <- syscall.SIGINT
	synctest.Wait() // no time passes: at once is now
	if !h.returned() {
		t.Fatal("Serve had not returned when the second signal had been handled")
	}
	if err := h.wait(); !errors.Is(err, ErrInterrupted) || ExitCode(err) != ExitInterrupted {
		t.Fatalf("Serve = %v (exit %d), want ErrInterrupted (exit %d)", err, ExitCode(err), ExitInterrupted)
	}
	if h.markerExists() {
		t.Fatal("marker left after the second signal")
	}
	// The work it drops is reported, not hidden.
	if st := h.srv.Stats(); st.TasksAbandoned != 1 || st.End != "second signal" {
		t.Fatalf("after the second signal: tasks_abandoned=%d end=%q, want 1 and \"second signal\"", st.TasksAbandoned, st.End)
	}
}

// A second signal ends the drain wherever it is, at once, and leaves
// nothing of the Server running (the bubble would not end otherwise):
// the listeners and their connections closed, Stopped.
func TestSecondSignalStopsEverything(t *testing.T) {
	tests := []struct {
		name   string
		delay  time.Duration // DrainDelay
		setup  func(h *harness, hold <-chan struct{})
		phases int // the drain's phases done when the second signal comes
	}{
		{"in the delay", testDrainDelay, func(*harness, <-chan struct{}) {}, 0},
		{"waiting for work", -1, func(h *harness, _ <-chan struct{}) {
			h.srv.TryGo(func(ctx context.Context) { <-ctx.Done() })
		}, 3},
		{"in a hook that ignores its context", -1, func(h *harness, hold <-chan struct{}) {
			h.srv.OnStop(func(context.Context) error { <-hold; return nil })
		}, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				hold := make(chan struct{})
				defer close(hold) // the user's hook, left running, ends with the test
				h := newHarness(t, nil, func(c *Config) { c.DrainDelay = tt.delay })
				tt.setup(h, hold)
				h.start()
				keepAlive := h.dial(h.url)
				keepAlive.Get("/work")
				h.signal()
				h.at(2 * testIdleClose) // the idle connection closed, unless in the delay
				if n := len(h.srv.Stats().Phases); n != tt.phases {
					t.Fatalf("%d phases done before the second signal, want %d", n, tt.phases)
				}
				h.sigs <- syscall.SIGINT
				synctest.Wait()
				if !h.returned() {
					t.Fatal("Serve had not returned when the second signal had been handled")
				}
				if err := h.wait(); !errors.Is(err, ErrInterrupted) {
					t.Fatalf("Serve = %v, want ErrInterrupted", err)
				}
				if !h.refused(h.url) || keepAlive.WaitClosed(0) != nil {
					t.Fatal("the main listener or its keep-alive connection still open after Serve returned")
				}
				if st := h.srv.State(); st != StateStopped {
					t.Fatalf("state %s, want stopped", st)
				}
			})
		})
	}
}

// A second signal while the deadline's hooks run ends them at once too.
// The ending is the second signal's, and the error says both.
func TestSecondSignalAfterTheDeadline(t *testing.T) { inBubble(t, testSecondSignalAfterTheDeadline) }

func testSecondSignalAfterTheDeadline(t *testing.T) {
	hold := make(chan struct{})
	defer close(hold) // the user's hook, left running, ends with the test
	h := newHarness(t, nil, func(c *Config) { c.DrainDelay = -1 })
	h.srv.TryGo(func(context.Context) { <-hold }) // ignores its context: the deadline comes
	hookStarted := make(chan struct{})
	h.srv.OnStop(func(context.Context) error { close(hookStarted); <-hold; return nil })
	h.start()
	h.signal()
	h.at(testExpire) // the phases' deadline: giveUp runs the hooks
	testutil.Receive(t, "the hook to start", hookStarted)
	if h.returned() {
		t.Fatal("Serve returned while a hook ran before the deadline itself")
	}
	h.sigs <- syscall.SIGINT
	synctest.Wait()
	if !h.returned() {
		t.Fatal("Serve had not returned when the second signal had been handled")
	}
	err := h.wait()
	if !errors.Is(err, ErrInterrupted) || !errors.Is(err, ErrShutdownTimeout) || ExitCode(err) != ExitInterrupted {
		t.Fatalf("Serve = %v (exit %d), want ErrInterrupted and ErrShutdownTimeout (exit %d)", err, ExitCode(err), ExitInterrupted)
	}
	if st := h.srv.Stats(); st.End != EndSecondSignal || st.TasksAbandoned != 1 {
		t.Fatalf("end=%q tasks_abandoned=%d, want %q and 1", st.End, st.TasksAbandoned, EndSecondSignal)
	}
	if h.markerExists() {
		t.Fatal("marker left after the second signal")
	}
}

func TestContextDoneStartsTheDrain(t *testing.T) { inBubble(t, testContextDoneStartsTheDrain) }

func testContextDoneStartsTheDrain(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.DrainDelay = -1 })
	ctx, cancel := context.WithCancel(context.Background())
	h.serve(ctx, h.listen())
	cancel()
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

func TestShutdownTimeoutAbandonsWork(t *testing.T) { inBubble(t, testShutdownTimeoutAbandonsWork) }

func testShutdownTimeoutAbandonsWork(t *testing.T) {
	h := newHarness(t, nil).start()
	cancelled := make(chan struct{})
	h.srv.TryGo(func(ctx context.Context) {
		<-ctx.Done()
		close(cancelled)
	})
	stopRan := make(chan struct{})
	h.srv.OnStop(func(context.Context) error { close(stopRan); return nil })
	h.signal()
	// The task holds the drain: the servers are drained (three phases
	// done), the task's context is live, nothing has returned, until the
	// phases' last instant.
	h.at(testExpire - time.Nanosecond)
	if n := len(h.srv.Stats().Phases); n != 3 || h.returned() || isClosed(cancelled) {
		t.Fatalf("just before the deadline: %d phases done (want 3), returned=%v, task cancelled=%v", n, h.returned(), isClosed(cancelled))
	}
	// Then it is abandoned.
	h.advance(time.Nanosecond)
	if !h.returned() {
		t.Fatal("Serve did not return at the deadline")
	}
	err := h.wait()
	if !errors.Is(err, ErrShutdownTimeout) || !strings.Contains(err.Error(), "1 background tasks abandoned") {
		t.Fatalf("Serve = %v, want ErrShutdownTimeout with 1 task abandoned", err)
	}
	<-cancelled
	<-stopRan
	if h.markerExists() {
		t.Fatal("marker left after the timeout")
	}
}

// ShutdownTimeout bounds it all: work that never ends, then a hook that
// takes what its context allows, and Serve returns at ShutdownTimeout
// exactly (it returned a second later). The hooks' context carries the
// deadline on every path, the clean one included (it had none).
func TestShutdownTimeoutBoundsItAll(t *testing.T) {
	for _, clean := range []bool{false, true} {
		t.Run(map[bool]string{false: "at the deadline", true: "clean"}[clean], func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				const timeout = 300 * time.Millisecond
				h := newHarness(t, nil, func(c *Config) {
					c.DrainDelay, c.ShutdownTimeout, c.IdleClose = NoDrainDelay, timeout, 10*time.Millisecond
				}).start()
				if !clean {
					h.srv.TryGo(func(ctx context.Context) { <-ctx.Done() })
				}
				deadline := make(chan time.Time, 1)
				h.srv.OnStop(func(ctx context.Context) error {
					d, _ := ctx.Deadline()
					deadline <- d
					<-ctx.Done() // takes all it may
					return nil
				})
				h.signal()
				h.at(timeout - time.Nanosecond)
				if h.returned() {
					t.Fatal("Serve returned before the deadline")
				}
				h.advance(time.Nanosecond)
				if !h.returned() {
					t.Fatalf("Serve had not returned at ShutdownTimeout %s", timeout)
				}
				if d := <-deadline; !d.Equal(h.signalled.Add(timeout)) {
					t.Fatalf("the hooks' deadline is %s after the signal, want %s", d.Sub(h.signalled), timeout)
				}
			})
		})
	}
}

func TestPanickingTaskDoesNotStopTheDrain(t *testing.T) {
	inBubble(t, testPanickingTaskDoesNotStopTheDrain)
}

func testPanickingTaskDoesNotStopTheDrain(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.DrainDelay = -1 }).start()
	h.srv.TryGo(func(context.Context) { panic("boom") })
	h.sigs <- syscall.SIGTERM
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// The drain must not race keep-alive clients: it closes a connection only
// after a response with Connection: close, or once the connection has been
// idle for the quiet period.
func TestConnectionsEndWithoutRacingClients(t *testing.T) {
	inBubble(t, testConnectionsEndWithoutRacingClients)
}

func testConnectionsEndWithoutRacingClients(t *testing.T) {
	h := newHarness(t, nil).start()
	old := h.dial(h.url) // idle since before the signal
	if resp := old.Get("/work"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before the drain: %d close=%v", resp.StatusCode, resp.Close)
	}
	busy := h.dial(h.url)
	busy.Get("/work")

	h.signal()
	if resp := busy.Get("/work"); !resp.Close {
		t.Fatal("response during the drain lacks Connection: close")
	}
	if err := busy.WaitClosed(testutil.Patience); err != nil {
		t.Fatalf("after Connection: close: %v", err)
	}

	// A connection opened half a quiet period before the delay ends.
	h.at(testDrainDelay - testIdleClose/2)
	late := h.dial(h.url)
	h.at(testDrainDelay)
	if !h.refused(h.url) {
		t.Fatal("the listener still accepts after the drain delay")
	}
	// Idle for the whole delay: closed as soon as the delay ends.
	if err := old.WaitClosed(0); err != nil {
		t.Fatalf("the connection idle for the whole delay: %v", err)
	}
	// Idle for half the quiet period: kept until it has been quiet for
	// the whole period, to the instant.
	h.at(testDrainDelay + testIdleClose/2 - time.Nanosecond)
	if late.WaitClosed(0) == nil {
		t.Fatal("connection closed before its quiet period")
	}
	h.advance(time.Nanosecond)
	if err := late.WaitClosed(0); err != nil {
		t.Fatalf("the connection quiet for IdleClose: %v", err)
	}
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
}

func TestReady(t *testing.T) {
	down := errors.New("dial tcp 10.0.0.1:6379: connection refused")
	tests := []struct {
		name     string
		checks   map[string]error
		slow     bool
		query    string
		method   string
		wantCode int
		wantBody []string
		notBody  []string
	}{
		{name: "no checks", wantCode: 200, wantBody: []string{"ok"}},
		{name: "passing", checks: map[string]error{"redis": nil}, wantCode: 200},
		{name: "failing hides the reason", checks: map[string]error{"redis": down}, wantCode: 503,
			wantBody: []string{"[-]redis failed"}, notBody: []string{"10.0.0.1"}},
		{name: "verbose shows each", checks: map[string]error{"redis": down}, query: "?verbose", wantCode: 503,
			wantBody: []string{"[-]redis: dial tcp"}},
		{name: "verbose passing", checks: map[string]error{"redis": nil}, query: "?verbose", wantCode: 200,
			wantBody: []string{"[+]redis ok"}},
		{name: "slow check times out", slow: true, wantCode: 503, wantBody: []string{"[-]slow failed"}},
		{name: "HEAD", method: "HEAD", wantCode: 200},
		{name: "POST", method: "POST", wantCode: 405},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				h := newHarness(t, nil, func(c *Config) { c.CheckTimeout = 20 * time.Millisecond })
				for name, err := range tt.checks {
					h.srv.AddCheck(name, func(context.Context) error { return err })
				}
				if tt.slow {
					h.srv.AddCheck("slow", func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() })
				}
				h.start()
				method := tt.method
				if method == "" {
					method = "GET"
				}
				req, _ := http.NewRequest(method, h.url+"/ready"+tt.query, nil)
				resp, err := h.client.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != tt.wantCode {
					t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tt.wantCode, b)
				}
				for _, w := range tt.wantBody {
					if !strings.Contains(string(b), w) {
						t.Errorf("body %q lacks %q", b, w)
					}
				}
				for _, w := range tt.notBody {
					if strings.Contains(string(b), w) {
						t.Errorf("body %q discloses %q", b, w)
					}
				}
			})
		})
	}
}

func TestLiveDoesNotRunChecks(t *testing.T) { inBubble(t, testLiveDoesNotRunChecks) }

func testLiveDoesNotRunChecks(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.AddCheck("redis", func(context.Context) error { return errors.New("down") })
	h.start()
	if code, _, _ := h.get(h.url + "/live"); code != 200 {
		t.Fatalf("/live = %d with a failing dependency, want 200", code)
	}
	if code, _, _ := h.get(h.url + "/ready"); code != 503 {
		t.Fatalf("/ready = %d with a failing dependency, want 503", code)
	}
}

// Validate checks the Config as New uses it: the zero Config is valid,
// and a message names the Go field.
func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		c    Config
		want string
	}{
		{"the zero Config", Config{}, ""},
		{"explicit defaults", Config{DrainDelay: 5 * time.Second, ShutdownTimeout: 25 * time.Second, IdleClose: time.Second}, ""},
		{"no delay", Config{DrainDelay: NoDrainDelay}, ""},
		{"delay equals the default timeout", Config{DrainDelay: 25 * time.Second}, "Config.DrainDelay"},
		{"delay beyond a timeout", Config{DrainDelay: time.Second, ShutdownTimeout: 300 * time.Millisecond}, "Config.DrainDelay"},
		{"negative timeout", Config{ShutdownTimeout: -time.Second}, "Config.ShutdownTimeout"},
		{"idle close beyond the deadline", Config{IdleClose: 20 * time.Second}, "Config.IdleClose"},
		{"negative idle close", Config{IdleClose: -1}, "Config.IdleClose"},
		{"negative max age", Config{LiveMaxAge: -1}, "Config.LiveMaxAge"},
		{"negative check timeout", Config{CheckTimeout: -1}, "Config.CheckTimeout"},
		{"unknown readiness", Config{DrainReadiness: 7}, "Config.DrainReadiness"},
		{"leave window that fits", Config{LeaveWindow: 18 * time.Second}, ""},
		{"no leave window", Config{LeaveWindow: NoLeaveWindow}, ""},
		// 5s of delay, and the steps end 1s before the 25s deadline.
		{"leave window past the steps' end", Config{LeaveWindow: 19 * time.Second}, "Config.LeaveWindow"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, probe.ErrUsage) {
				t.Fatalf("Validate = %v, want a usage error naming %s", err, tt.want)
			}
		})
	}
}

// Config.HTTP's Addr and Handler serve when New's are not given, and two
// of them that disagree are an error Run returns before it listens.
func TestConfigHTTPAddrAndHandler(t *testing.T) {
	mine := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "mine\n") })
	t.Run("Config.HTTP.Handler serves", func(t *testing.T) {
		inBubble(t, func(t *testing.T) {
			h := newHarness(t, nil, func(c *Config) { c.HTTP = &http.Server{Handler: mine} }).start()
			if _, _, body := h.get(h.url + "/x"); body != "mine\n" {
				t.Fatalf("GET /x = %q, want Config.HTTP.Handler's answer", body)
			}
		})
	})
	t.Run("Config.HTTP.Addr serves", func(t *testing.T) {
		srv := New(Config{HTTP: &http.Server{Addr: "127.0.0.1:1"}}, nil)
		if srv.cfg.Addr != "127.0.0.1:1" {
			t.Fatalf("Addr %q, want Config.HTTP.Addr", srv.cfg.Addr)
		}
	})
	for _, tt := range []struct {
		name    string
		cfg     Config
		handler http.Handler
		want    string
	}{
		{"two handlers", Config{HTTP: &http.Server{Handler: mine}}, mine, "both set"},
		{"two addresses", Config{Addr: "127.0.0.1:1", HTTP: &http.Server{Addr: "127.0.0.1:2"}}, nil, "differ"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := New(tt.cfg, tt.handler)
			err := srv.Run(context.Background())
			if !errors.Is(err, probe.ErrUsage) || !strings.Contains(err.Error(), tt.want) || srv.Addr() != nil {
				t.Fatalf("Run = %v (listening on %v), want a usage error saying %q, before listening", err, srv.Addr(), tt.want)
			}
		})
	}
}

// A caller's ConnContext runs after the drain's: a value it puts in the
// connection's context reaches the handler (it arrived as nil). A nil
// handler answers 404 on every listener (AddHTTP served
// http.DefaultServeMux).
func TestConnContextChainedAndNilHandlers(t *testing.T) {
	inBubble(t, testConnContextChainedAndNilHandlers)
}

func testConnContextChainedAndNilHandlers(t *testing.T) {
	type key struct{}
	got := make(chan any, 1)
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Context().Value(key{}) }),
		func(c *Config) {
			c.HTTP = &http.Server{ConnContext: func(ctx context.Context, _ net.Conn) context.Context {
				return context.WithValue(ctx, key{}, "mine")
			}}
		})
	// expvar's import registered /debug/vars on http.DefaultServeMux,
	// as pprof's does in services; the test adds nothing to it (a second
	// run in one process, -count=2, would panic on the pattern).
	if _, pattern := http.DefaultServeMux.Handler(httptest.NewRequest(http.MethodGet, "/debug/vars", nil)); !strings.HasSuffix(pattern, "/debug/vars") {
		t.Fatalf("http.DefaultServeMux routes /debug/vars to %q: the control needs expvar's handler", pattern)
	}
	api := h.listen()
	h.srv.AddHTTP(nil, api)
	admin := h.listen()
	h.srv.AddAdmin(nil, admin)
	h.start()
	h.get(h.url + "/x")
	if v := <-got; v != "mine" {
		t.Fatalf("the handler saw %v in the connection's context, want the caller's value", v)
	}
	for _, ln := range []net.Listener{api, admin} {
		if code, _, _ := h.get("http://" + ln.Addr().String() + "/debug/vars"); code != 404 {
			t.Fatalf("%s: a nil handler answered %d, want 404", ln.Addr(), code)
		}
	}
}

func TestBadMarkerPathFailsBeforeListening(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) {
		c.LiveFile = filepath.Join(t.TempDir(), "missing", "live")
		c.Addr = "127.0.0.1:0"
	})
	err := h.srv.Run(context.Background())
	if !errors.Is(err, probe.ErrUsage) || !strings.Contains(err.Error(), "Config.LiveFile") {
		t.Fatalf("Run = %v, want a usage error naming Config.LiveFile", err)
	}
	if h.srv.Addr() != nil {
		t.Fatal("server listened despite a bad marker path")
	}
}

func TestServeErrorRemovesMarker(t *testing.T) { inBubble(t, testServeErrorRemovesMarker) }

func testServeErrorRemovesMarker(t *testing.T) {
	h := newHarness(t, nil)
	ln := h.listen()
	h.serve(context.Background(), ln)
	ln.Close()
	if err := h.wait(); err == nil {
		t.Fatal("Serve = nil after its listener failed")
	}
	if h.markerExists() {
		t.Fatal("marker left after a serve error")
	}
}

// Under ReadyWhileServing a failing check still makes /ready 503 during the
// drain, and a check that recovers makes it 200 again, until the listeners
// close; the admin listener then answers 503 to the end.
func TestReadyDuringTheDrain(t *testing.T) { inBubble(t, testReadyDuringTheDrain) }

func testReadyDuringTheDrain(t *testing.T) {
	var failing atomic.Bool
	h := newHarness(t, nil)
	adminLn := h.listen()
	h.srv.AddAdmin(nil, adminLn)
	h.srv.AddCheck("db", func(context.Context) error {
		if failing.Load() {
			return errors.New("down")
		}
		return nil
	})
	h.start()
	admin := "http://" + adminLn.Addr().String()
	release := make(chan struct{})
	defer close(release)
	h.srv.TryGo(func(context.Context) { <-release }) // holds the drain after the listeners close
	h.signal()
	steps := []struct {
		failing  bool
		wantCode int
		wantBody string
	}{
		{false, 200, "draining: serving until the listeners close\nok\n"},
		{true, 503, "[-]db failed\ndraining: serving until the listeners close\nnot ready\n"},
		{false, 200, "draining: serving until the listeners close\nok\n"},
	}
	for _, st := range steps {
		failing.Store(st.failing)
		for _, url := range []string{h.url, admin} {
			if code, _, body := h.get(url + "/ready"); code != st.wantCode || body != st.wantBody {
				t.Fatalf("%s/ready with the check failing=%v: %d %q, want %d %q", url, st.failing, code, body, st.wantCode, st.wantBody)
			}
		}
	}
	h.at(testDrainDelay)
	if !h.refused(h.url) {
		t.Fatal("the main listener still accepts after the drain delay")
	}
	if code, _, body := h.get(admin + "/ready"); code != 503 || body != "not ready: draining\n" {
		t.Fatalf("admin /ready after the listeners closed: %d %q, want 503 not ready: draining", code, body)
	}
}

// A clean drain whose stop hook fails ends with the catch-all code, and
// a clean one with 0.
func TestExitCodeOfADrain(t *testing.T) { inBubble(t, testExitCodeOfADrain) }

func testExitCodeOfADrain(t *testing.T) {
	for _, hookErr := range []error{nil, errors.New("db close failed")} {
		h := newHarness(t, nil, func(c *Config) { c.DrainDelay = -1 }).start()
		h.srv.OnStop(func(context.Context) error { return hookErr })
		h.sigs <- syscall.SIGTERM // no delay, no connection: the drain needs no time
		err := h.wait()
		want := ExitClean
		if hookErr != nil {
			want = ExitFailed
		}
		if !errors.Is(err, hookErr) || ExitCode(err) != want {
			t.Fatalf("hook error %v: Serve = %v (exit %d), want exit %d", hookErr, err, ExitCode(err), want)
		}
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, ExitClean},
		{errors.New("stop hook failed"), ExitFailed},
		{fmt.Errorf("%w: DRAIN_DELAY", probe.ErrUsage), ExitUsage},
		{fmt.Errorf("grpc %w: returned", ErrServerStopped), ExitServerStopped},
		{fmt.Errorf("%w after 25s", ErrShutdownTimeout), ExitShutdownTimeout},
		{fmt.Errorf("%w (interrupt)", ErrInterrupted), ExitInterrupted},
		// The latest ending in the drain wins.
		{errors.Join(fmt.Errorf("grpc %w", ErrServerStopped), ErrShutdownTimeout), ExitShutdownTimeout},
		{errors.Join(ErrShutdownTimeout, ErrInterrupted), ExitInterrupted},
	}
	seen := map[int]bool{}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
		seen[tt.want] = true
	}
	if len(seen) != 6 {
		t.Errorf("%d distinct codes, want 6", len(seen))
	}
}
