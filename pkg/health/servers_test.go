package health

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainwell/drainwell/pkg/probe"
)

// funcComponent is a Component made of two functions.
type funcComponent struct {
	run      func(ctx context.Context) error
	shutdown func(ctx context.Context) error
}

func (f funcComponent) Run(ctx context.Context) error      { return f.run(ctx) }
func (f funcComponent) Shutdown(ctx context.Context) error { return f.shutdown(ctx) }

// The main listener, a second API listener and a component that hangs in
// Shutdown drain side by side: the hung one holds neither listener's drain,
// and the admin listener answers to the end.
func TestServersDrainSideBySide(t *testing.T) { inBubble(t, testServersDrainSideBySide) }

func testServersDrainSideBySide(t *testing.T) {
	h := newHarness(t, nil)
	release := make(chan struct{})
	slowStarted := make(chan struct{})
	api := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(slowStarted)
			<-release
		}
		io.WriteString(w, "api\n")
	})}
	apiLn, adminLn := h.listen(), h.listen()
	h.srv.AddHTTP(api, apiLn)
	h.srv.AddAdmin(&http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "metrics\n")
	})}, adminLn)
	h.srv.AddCheck("db", func(context.Context) error { return errors.New("secret detail") })
	var shutdownCalled atomic.Bool
	h.srv.Add("stuck", funcComponent{
		run: func(ctx context.Context) error { <-ctx.Done(); return nil },
		shutdown: func(ctx context.Context) error {
			shutdownCalled.Store(true)
			<-ctx.Done() // a GracefulStop that never returns
			return errors.New("3 jobs cut")
		},
	})
	h.start()
	apiURL, adminURL := "http://"+apiLn.Addr().String(), "http://"+adminLn.Addr().String()

	// Probe detail only on the admin listener.
	if _, _, body := h.get(h.url + "/ready?verbose"); strings.Contains(body, "secret") {
		t.Fatalf("main /ready?verbose shows check detail with an admin listener: %q", body)
	}
	if _, _, body := h.get(adminURL + "/ready?verbose"); !strings.Contains(body, "secret detail") {
		t.Fatalf("admin /ready?verbose = %q, want the check's detail", body)
	}
	if code, _, body := h.get(adminURL + "/metrics"); code != 200 || body != "metrics\n" {
		t.Fatalf("admin /metrics = %d %q", code, body)
	}
	if _, _, body := h.get(apiURL + "/ready"); body != "api\n" {
		t.Fatalf("API listener /ready = %q, want its own handler's answer (probes are not its business)", body)
	}
	slow := make(chan string, 1)
	go func() {
		resp, err := h.client.Get(apiURL + "/slow")
		if err != nil {
			slow <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		slow <- string(b)
	}()
	<-slowStarted

	h.srv.AddCheck("ok", func(context.Context) error { return nil })
	h.signal()
	if code, _, body := h.get(adminURL + "/ready"); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("admin /ready after the signal = %d %q", code, body)
	}
	if resp := h.dial(apiURL).Get("/work"); resp.StatusCode != 200 || !resp.Close {
		t.Fatalf("API listener during the delay: %d close=%v, want 200 with Connection: close", resp.StatusCode, resp.Close)
	}
	if shutdownCalled.Load() {
		t.Fatal("component shut down before the drain delay ended")
	}

	h.at(testDrainDelay)
	if !h.refused(h.url) || !h.refused(apiURL) || !shutdownCalled.Load() {
		t.Fatalf("after the delay: main refused %v, API refused %v, component shut down %v; want all three",
			h.refused(h.url), h.refused(apiURL), shutdownCalled.Load())
	}
	close(release)
	if got := <-slow; got != "api\n" {
		t.Fatalf("request in flight on the API listener: %q", got)
	}
	synctest.Wait()
	if m, a := h.srv.main.step.Load(), h.srv.apis[0].step.Load(); m == nil || *m != "" || a == nil || *a != "" {
		t.Fatal("the main and API listeners have not both drained")
	}
	// The stuck component holds the exit, not the others; the admin
	// listener still answers.
	if h.returned() {
		t.Fatal("returned while a component was still stopping")
	}
	if code, _, _ := h.get(adminURL + "/live"); code != 200 {
		t.Fatalf("admin /live during the drain = %d", code)
	}
	h.at(testExpire - time.Nanosecond)
	if h.returned() {
		t.Fatal("returned before the deadline while a component was still stopping")
	}
	h.advance(time.Nanosecond)
	err := h.wait()
	if !errors.Is(err, ErrShutdownTimeout) || !strings.Contains(err.Error(), "servers: stuck shutdown") ||
		!strings.Contains(err.Error(), "3 jobs cut") {
		t.Fatalf("Serve = %v, want a timeout naming the stuck component and what it cut", err)
	}
	if !h.refused(adminURL) {
		t.Fatal("the admin listener still accepts after Serve returned")
	}
}

// A worker: takes jobs until Shutdown, which comes after the drain delay,
// finishes the one it holds, and returns.
func TestWorkerComponentDrains(t *testing.T) { inBubble(t, testWorkerComponentDrains) }

func testWorkerComponentDrains(t *testing.T) {
	h := newHarness(t, nil)
	jobs := make(chan int)
	stop := make(chan struct{})
	var done atomic.Int64
	var shutdownCalled atomic.Bool
	h.srv.Add("worker", funcComponent{
		run: func(ctx context.Context) error {
			for {
				select {
				case <-jobs:
					done.Add(1)
				case <-stop:
					return nil
				case <-ctx.Done():
					return ctx.Err()
				}
			}
		},
		shutdown: func(ctx context.Context) error {
			shutdownCalled.Store(true)
			close(stop)
			return nil
		},
	})
	h.start()
	jobs <- 1
	h.signal()
	jobs <- 2 // still taking work during the delay
	h.at(testDrainDelay - time.Nanosecond)
	if shutdownCalled.Load() {
		t.Fatal("shut down before the delay ended")
	}
	h.advance(time.Nanosecond)
	if !shutdownCalled.Load() {
		t.Fatal("not shut down when the delay ended")
	}
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
	if done.Load() != 2 {
		t.Fatalf("worker did %d jobs, want 2", done.Load())
	}
}

// A component whose Run fails starts the drain, and Serve reports its
// error. The healthy listener keeps the drain delay: endpoint lag routes
// requests to this pod as to any other (it closed at once, refusing
// them).
func TestComponentFailureStartsTheDrain(t *testing.T) {
	inBubble(t, testComponentFailureStartsTheDrain)
}

func testComponentFailureStartsTheDrain(t *testing.T) {
	h := newHarness(t, nil)
	fail := make(chan struct{})
	h.srv.Add("consumer", funcComponent{
		run:      func(context.Context) error { <-fail; return errors.New("queue gone") },
		shutdown: func(context.Context) error { return nil },
	})
	h.start()
	failed := time.Now()
	close(fail)
	synctest.Wait()
	if h.srv.State() != StateDraining {
		t.Fatalf("state %s after the component failed, want draining", h.srv.State())
	}
	h.advance(testDrainDelay - time.Since(failed) - time.Nanosecond)
	if code, _, _ := h.get(h.url + "/x"); code != 200 {
		t.Fatalf("the healthy listener answered %d in the drain delay, want 200", code)
	}
	h.advance(time.Nanosecond)
	if !h.refused(h.url) {
		t.Fatal("the healthy listener still accepts after the drain delay")
	}
	err := h.wait()
	if err == nil || !strings.Contains(err.Error(), "consumer") || !strings.Contains(err.Error(), "queue gone") {
		t.Fatalf("Serve = %v, want the consumer's error", err)
	}
	if !errors.Is(err, ErrServerStopped) || ExitCode(err) != ExitServerStopped {
		t.Fatalf("Serve = %v (exit %d), want ErrServerStopped (exit %d)", err, ExitCode(err), ExitServerStopped)
	}
	if h.markerExists() {
		t.Fatal("marker left")
	}
}

func TestAddAfterRunPanics(t *testing.T) { inBubble(t, testAddAfterRunPanics) }

func testAddAfterRunPanics(t *testing.T) {
	h := newHarness(t, nil).start()
	defer func() {
		if recover() == nil {
			t.Fatal("Add after Run did not panic")
		}
	}()
	h.srv.Add("late", funcComponent{})
}

// A Server runs once: Run again returns ErrRunTwice (it panicked, "close
// of closed channel"); an OnStop added once the hooks have run returns
// ErrTooLate (it was dropped without a word), one added while it runs,
// before, runs.
func TestRunTwiceAndLateOnStop(t *testing.T) { inBubble(t, testRunTwiceAndLateOnStop) }

func testRunTwiceAndLateOnStop(t *testing.T) {
	h := newHarness(t, nil).start()
	if err := h.srv.Run(context.Background()); !errors.Is(err, ErrRunTwice) {
		t.Fatalf("Run while running = %v, want ErrRunTwice", err)
	}
	ran := make(chan struct{})
	if err := h.srv.OnStop(func(context.Context) error { close(ran); return nil }); err != nil {
		t.Fatalf("OnStop while running = %v", err)
	}
	h.signal()
	if err := h.wait(); err != nil {
		t.Fatal(err)
	}
	<-ran
	if err := h.srv.OnStop(func(context.Context) error { return nil }); !errors.Is(err, ErrTooLate) {
		t.Fatalf("OnStop after the hooks ran = %v, want ErrTooLate", err)
	}
	if err := h.srv.Serve(context.Background(), h.listen()); !errors.Is(err, ErrRunTwice) {
		t.Fatalf("Serve after the drain = %v, want ErrRunTwice", err)
	}
}

// A ServeMux that routes /ready or /live, which the main listener answers
// itself, is an error Run returns before it listens (the route was hidden
// without a word). The control, a catch-all "/", is no conflict.
func TestShadowedRoutesRefused(t *testing.T) {
	for _, tt := range []struct {
		pattern string
		refused bool
	}{
		{"/ready", true},
		{"GET /live", true},
		{"/", false},
		{"/orders", false},
	} {
		t.Run(tt.pattern, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				mux := http.NewServeMux()
				mux.HandleFunc(tt.pattern, func(http.ResponseWriter, *http.Request) {})
				h := newHarness(t, mux)
				ln := h.listen()
				if tt.refused {
					err := h.srv.Serve(context.Background(), ln)
					if !errors.Is(err, probe.ErrUsage) || !strings.Contains(err.Error(), "answers itself") || h.srv.Addr() != nil {
						t.Fatalf("Serve = %v, want a usage error naming the route, before listening", err)
					}
					return
				}
				h.serve(context.Background(), ln)
				h.signal()
				if err := h.wait(); err != nil {
					t.Fatalf("Serve = %v", err)
				}
			})
		})
	}
}
