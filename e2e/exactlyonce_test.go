package e2e

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainwell/drainwell/e2e/redisfault"
	"github.com/drainwell/drainwell/internal/testutil"
)

// Redis behind a proxy that, on every 4th write, in turn: drops Redis's
// reply after the write took effect and resets the connection; holds the
// reply past the client's 1s read timeout; resets the connection before the
// write reaches Redis. Every accepted request must be counted exactly once.
// The control retries a plain INCR in the same harness and counts the
// writes whose reply was lost twice.
func TestEveryAcceptedIncrementCountedExactlyOnce(t *testing.T) {
	tests := []struct {
		name    string
		bin     string
		env     []string
		control bool
	}{
		{name: "app: ID recorded with the increment, atomically", bin: "app",
			env: []string{"SHUTDOWN_TIMEOUT=20s", "IDLE_CLOSE=100ms"}},
		{name: "control: plain INCR retried", bin: "badserver",
			env: []string{"MODE=incrretry"}, control: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startRedis(t)
			proxy := &redisfault.Proxy{Target: r.Addr, Every: 4, Delay: 1500 * time.Millisecond}
			if err := proxy.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(proxy.Close)
			env := append([]string{"ADDR=127.0.0.1:0", "REDIS_ADDR=" + proxy.Addr(),
				"LIVE_FILE=" + filepath.Join(t.TempDir(), "live"), "DRAIN_DELAY=100ms", "WORK_DELAY=10ms"}, tt.env...)
			p := start(t, bins[tt.bin], env...)
			const n = 60
			answered := 0
			for range n {
				resp, err := http.Post("http://"+p.Addr+"/incr", "", nil)
				if err != nil {
					t.Fatalf("POST: %v", err)
				}
				resp.Body.Close()
				if resp.StatusCode == 200 {
					answered++
				}
			}
			p.Signal(syscall.SIGTERM)
			code, err := p.Wait(30 * time.Second)
			if err != nil || code != 0 {
				t.Fatalf("exit %d %v, want 0", code, err)
			}
			got, err := r.Count(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			injected := proxy.Injected()
			t.Logf("%d answered 200, counter %d; faults injected: %v", answered, got, injected)
			for f, k := range injected {
				if k == 0 {
					t.Fatalf("no %s fault injected: the test did not test it", f)
				}
			}
			switch {
			case tt.control && got <= int64(answered):
				t.Fatalf("control: counter %d, answered %d: the plain retry should have counted lost replies twice", got, answered)
			case !tt.control && got != int64(answered):
				t.Fatalf("counter %d, answered %d: want exactly one increment per accepted request", got, answered)
			case !tt.control && !strings.Contains(p.Stderr(), "increment landed after retries"):
				t.Fatal("no retry logged: the faults did not reach the app")
			}
		})
	}
}

// An INCR that fails inside the script (the counter key holds a
// non-integer) records nothing: the increment is retried, logged as
// failing, and once the counter is repaired it lands exactly once. (Before,
// the script's SET NX stayed, the retry found the ID, the log said
// "landed" and the count never moved.)
func TestFailingIncrIsRetriedNotRecorded(t *testing.T) {
	r := startRedis(t)
	ctx := context.Background()
	if err := r.Client.Set(ctx, "counter", "not a number", 0).Err(); err != nil {
		t.Fatal(err)
	}
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "LIVE_FILE="+filepath.Join(t.TempDir(), "live"), "REDIS_ADDR="+r.Addr,
		"WORK_DELAY=0s", "DRAIN_DELAY=100ms", "IDLE_CLOSE=100ms", "SHUTDOWN_TIMEOUT=20s")
	resp, err := http.Post("http://"+p.Addr+"/incr", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	testutil.WaitFor(t, "the failing increment retried", func() bool {
		return strings.Count(p.Stderr(), "increment failed, retrying") >= 2
	})
	if strings.Contains(p.Stderr(), "landed") {
		t.Fatalf("an increment that failed is logged as landed:\n%s", p.Stderr())
	}
	if err := r.Client.Set(ctx, "counter", "10", 0).Err(); err != nil { // the operator repairs it
		t.Fatal(err)
	}
	testutil.WaitFor(t, "the increment landed", func() bool { return strings.Contains(p.Stderr(), "increment landed after retries") })
	p.Signal(syscall.SIGTERM)
	if code, err := p.Wait(15 * time.Second); err != nil || code != 0 {
		t.Fatalf("exit %d %v", code, err)
	}
	if n, err := r.Count(ctx); err != nil || n != 11 {
		t.Fatalf("counter %d %v, want 11: the repaired counter plus the one increment", n, err)
	}
}
