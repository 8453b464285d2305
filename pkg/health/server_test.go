package health

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/drainwell/drainwell/internal/fakeclock"
	"github.com/drainwell/drainwell/pkg/probe"
)

// harness runs a Server on 127.0.0.1:0 with a fake clock, a signal channel
// and a marker in a temporary folder.
type harness struct {
	t      *testing.T
	srv    *Server
	clock  *fakeclock.Clock
	sigs   chan os.Signal
	marker *probe.Marker
	url    string
	result chan error
	done   chan struct{} // closed when Serve has returned
}

const (
	testDrainDelay = 5 * time.Second
	testTimeout    = 25 * time.Second
	testIdleClose  = time.Second
)

func newHarness(t *testing.T, h http.Handler, mutate ...func(*Config)) *harness {
	t.Helper()
	if h == nil {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") })
	}
	clock := fakeclock.New(time.Unix(1_700_000_000, 0))
	hs := &harness{
		t:      t,
		clock:  clock,
		sigs:   make(chan os.Signal, 4),
		marker: &probe.Marker{Path: filepath.Join(t.TempDir(), "live")},
		result: make(chan error, 1),
		done:   make(chan struct{}),
	}
	cfg := Config{
		DrainDelay:      testDrainDelay,
		ShutdownTimeout: testTimeout,
		IdleClose:       testIdleClose,
		Marker:          hs.marker,
		Logger:          slog.New(slog.NewTextHandler(testWriter{t}, nil)),
	}
	for _, f := range mutate {
		f(&cfg)
	}
	hs.srv = newServer(cfg, h, clock, hs.sigs)
	return hs
}

func (h *harness) start() *harness {
	h.t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		h.t.Fatal(err)
	}
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
	waitFor(h.t, "ready", func() bool { return h.srv.State() == Ready })
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

// signal sends SIGTERM and waits until the drain has armed its deadline and
// delay timers, so that advancing the clock reaches them.
func (h *harness) signal() {
	h.t.Helper()
	h.sigs <- syscall.SIGTERM
	waitFor(h.t, "drain timers armed", func() bool { return h.clock.Waiters() >= 2 })
}

func (h *harness) wait() error {
	h.t.Helper()
	select {
	case err := <-h.result:
		return err
	case <-time.After(10 * time.Second):
		h.t.Fatal("Serve did not return")
		return nil
	}
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
	_, err := os.Lstat(h.marker.Path)
	return err == nil
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// noKeepAlive is a client that opens a new connection per request.
var noKeepAlive = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}

func get(t *testing.T, url string) (code int, header http.Header, body string) {
	t.Helper()
	resp, err := noKeepAlive.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func TestDrainSequence(t *testing.T) {
	for _, policy := range []ReadinessPolicy{ReadyWhileServing, NotReadyAtSignal} {
		t.Run(policy.String(), func(t *testing.T) { testDrainSequence(t, policy) })
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
	if code, _, _ := get(t, h.url+"/ready"); code != 200 {
		t.Fatalf("/ready = %d before the signal", code)
	}
	release := make(chan struct{})
	taskCtxErr := make(chan error, 1)
	if err := h.srv.Go(func(ctx context.Context) {
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
	if code, _, body := get(t, h.url+"/ready"); code != wantCode || !strings.Contains(body, "draining") {
		t.Fatalf("/ready after the signal = %d %q, want %d draining", code, body, wantCode)
	}
	if got, want := isClosed(h.srv.NotReady()), policy == NotReadyAtSignal; got != want {
		t.Fatalf("NotReady closed at the signal = %v, want %v", got, want)
	}
	// Still serving during the drain delay, with Connection: close (asked
	// on a keep-alive connection: a client that asks to close gets it
	// anyway).
	if resp := dialRaw(t, h.url).do("/work"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("during the delay: %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if h.srv.State() != Draining {
		t.Fatalf("state %s, want draining", h.srv.State())
	}

	h.clock.Advance(testDrainDelay)
	waitFor(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", strings.TrimPrefix(h.url, "http://"))
		if err == nil {
			c.Close()
		}
		return err != nil
	})
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
	if err := h.srv.Go(func(context.Context) {}); !errors.Is(err, ErrStopped) {
		t.Fatalf("Go after the drain = %v, want ErrStopped", err)
	}
	if h.srv.State() != Stopped {
		t.Fatalf("state %s, want stopped", h.srv.State())
	}
}

func TestSecondSignalReturnsAtOnce(t *testing.T) {
	h := newHarness(t, nil).start()
	h.srv.Go(func(ctx context.Context) { <-ctx.Done() }) // would hold the drain
	h.signal()
	h.sigs <- syscall.SIGINT
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

func TestContextDoneStartsTheDrain(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.DrainDelay = -1 })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.serve(ctx, ln)
	cancel()
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

func TestShutdownTimeoutAbandonsWork(t *testing.T) {
	h := newHarness(t, nil).start()
	cancelled := make(chan struct{})
	h.srv.Go(func(ctx context.Context) {
		<-ctx.Done()
		close(cancelled)
	})
	stopRan := make(chan struct{})
	h.srv.OnStop(func(context.Context) error { close(stopRan); return nil })
	h.signal()
	h.clock.Advance(testDrainDelay)
	// The task holds the drain; past the deadline it is abandoned.
	waitFor(t, "drain waiting on work", func() bool { return h.clock.Waiters() >= 1 })
	h.clock.Advance(testTimeout - testDrainDelay)
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

func TestPanickingTaskDoesNotStopTheDrain(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) { c.DrainDelay = -1 }).start()
	h.srv.Go(func(context.Context) { panic("boom") })
	h.sigs <- syscall.SIGTERM
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// rawConn is a keep-alive HTTP/1.1 client connection.
type rawConn struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, url string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, c: c, r: bufio.NewReader(c)}
}

func (rc *rawConn) do(path string) *http.Response {
	rc.t.Helper()
	if _, err := io.WriteString(rc.c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		rc.t.Fatal(err)
	}
	resp, err := http.ReadResponse(rc.r, nil)
	if err != nil {
		rc.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// closedWithin reports whether the server closed the connection within d.
func (rc *rawConn) closedWithin(d time.Duration) bool {
	rc.c.SetReadDeadline(time.Now().Add(d))
	_, err := rc.r.ReadByte()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return true
}

// The drain must not race keep-alive clients: it closes a connection only
// after a response with Connection: close, or once the connection has been
// idle for the quiet period.
func TestConnectionsEndWithoutRacingClients(t *testing.T) {
	h := newHarness(t, nil).start()
	addr := strings.TrimPrefix(h.url, "http://")
	old := dialRaw(t, h.url) // idle since before the signal
	if resp := old.do("/work"); resp.StatusCode != 200 || resp.Close {
		t.Fatalf("before the drain: %d close=%v", resp.StatusCode, resp.Close)
	}
	busy := dialRaw(t, h.url)
	busy.do("/work")

	h.signal()
	if resp := busy.do("/work"); !resp.Close {
		t.Fatal("response during the drain lacks Connection: close")
	}
	if !busy.closedWithin(5 * time.Second) {
		t.Fatal("server kept the connection open after Connection: close")
	}

	// A connection opened half a quiet period before the delay ends.
	h.clock.Advance(testDrainDelay - testIdleClose/2)
	late := dialRaw(t, h.url)
	waitFor(t, "connection tracked", func() bool { _, idle, _, _ := h.srv.main.conns.counts(); return idle == 2 })
	h.clock.Advance(testIdleClose / 2)
	waitFor(t, "listener closed", func() bool {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	// Idle for the whole delay: closed as soon as the delay ends.
	if !old.closedWithin(5 * time.Second) {
		t.Fatal("connection idle for the whole delay was not closed")
	}
	// Idle for half the quiet period: kept. The fake clock does not move,
	// so nothing may close it, however long the wait.
	if late.closedWithin(50 * time.Millisecond) {
		t.Fatal("connection closed before its quiet period")
	}
	waitFor(t, "quiet connection closed", func() bool {
		h.clock.Advance(10 * time.Millisecond)
		return late.closedWithin(time.Millisecond)
	})
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
			resp, err := noKeepAlive.Do(req)
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
	}
}

func TestLiveDoesNotRunChecks(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.AddCheck("redis", func(context.Context) error { return errors.New("down") })
	h.start()
	if code, _, _ := get(t, h.url+"/live"); code != 200 {
		t.Fatalf("/live = %d with a failing dependency, want 200", code)
	}
	if code, _, _ := get(t, h.url+"/ready"); code != 503 {
		t.Fatalf("/ready = %d with a failing dependency, want 503", code)
	}
}

func TestConfigValidate(t *testing.T) {
	base := Config{DrainDelay: 5 * time.Second, ShutdownTimeout: 25 * time.Second, IdleClose: time.Second}
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string
	}{
		{"defaults", func(*Config) {}, ""},
		{"delay equals timeout", func(c *Config) { c.DrainDelay = 25 * time.Second }, "DRAIN_DELAY"},
		{"negative timeout", func(c *Config) { c.ShutdownTimeout = -time.Second }, "SHUTDOWN_TIMEOUT"},
		{"idle close beyond the deadline", func(c *Config) { c.IdleClose = 20 * time.Second }, "IDLE_CLOSE"},
		{"negative idle close", func(c *Config) { c.IdleClose = -1 }, "IDLE_CLOSE"},
		{"negative max age", func(c *Config) { c.MarkerMaxAge = -1 }, "LIVE_MAX_AGE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base
			tt.mutate(&c)
			err := c.Validate()
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

func TestBadMarkerPathFailsBeforeListening(t *testing.T) {
	h := newHarness(t, nil, func(c *Config) {
		c.Marker = &probe.Marker{Path: filepath.Join(t.TempDir(), "missing", "live")}
		c.Addr = "127.0.0.1:0"
	})
	err := h.srv.Run(context.Background())
	if !errors.Is(err, probe.ErrUsage) || !strings.Contains(err.Error(), "LIVE_FILE") {
		t.Fatalf("Run = %v, want a usage error naming LIVE_FILE", err)
	}
	if h.srv.Addr() != nil {
		t.Fatal("server listened despite a bad marker path")
	}
}

func TestServeErrorRemovesMarker(t *testing.T) {
	h := newHarness(t, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
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
func TestReadyDuringTheDrain(t *testing.T) {
	var failing atomic.Bool
	adminLn := listen(t)
	h := newHarness(t, nil)
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
	h.srv.Go(func(context.Context) { <-release }) // holds the drain after the listeners close
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
			if code, _, body := get(t, url+"/ready"); code != st.wantCode || body != st.wantBody {
				t.Fatalf("%s/ready with the check failing=%v: %d %q, want %d %q", url, st.failing, code, body, st.wantCode, st.wantBody)
			}
		}
	}
	h.clock.Advance(testDrainDelay)
	waitFor(t, "main listener closed", func() bool { return refused(strings.TrimPrefix(h.url, "http://")) })
	if code, _, body := get(t, admin+"/ready"); code != 503 || body != "not ready: draining\n" {
		t.Fatalf("admin /ready after the listeners closed: %d %q, want 503 not ready: draining", code, body)
	}
}

// A clean drain whose stop hook fails ends with the catch-all code, and
// a clean one with 0.
func TestExitCodeOfADrain(t *testing.T) {
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
