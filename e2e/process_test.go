// Process tests: the real binaries, real signals, a real Redis.
package e2e

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/e2e/harness/harnesstest"
	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
)

var bins map[string]string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "drainwell-e2e")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // tests run the binaries as other users too
	bins, err = harness.Build(dir, "github.com/drainwell/drainwell/cmd/app", "github.com/drainwell/drainwell/cmd/probe",
		"github.com/drainwell/drainwell/cmd/probe-tls", "github.com/drainwell/drainwell/e2e/badserver")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func startRedis(t *testing.T) *harness.Redis { return harnesstest.Redis(t) }

func start(t *testing.T, bin string, env ...string) *harness.Proc {
	t.Helper()
	return harnesstest.Start(t, bin, env)
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// violations of the drain's safety properties, by kind.
type violations map[string]string

func (v violations) add(kind, format string, args ...any) {
	if _, ok := v[kind]; !ok {
		v[kind] = fmt.Sprintf(format, args...)
	}
}

// Kinds of violation.
const (
	readiness = "readiness" // /ready did not answer as the policy says during the drain delay
	refused   = "refused"   // a request during the drain delay failed
	marker    = "marker"    // the marker was gone too early or left behind
	exitCode  = "exit"      // the process did not exit 0
	lost      = "lost"      // the counter is below the number of 200s
)

// drainScenario is the core issue's "as a new user would" run: increments
// before and during the drain, SIGTERM, and every property checked. It
// returns what was violated, so that a negative control can show that each
// check catches its unsafe server.
//
// wantPolicy is the readiness the run must show during the delay:
// "serving" (200, saying it drains) or "not-ready" (503).
func drainScenario(t *testing.T, bin, wantPolicy string, extraEnv ...string) violations {
	t.Helper()
	r := startRedis(t)
	live := filepath.Join(t.TempDir(), "live")
	env := append([]string{"ADDR=127.0.0.1:0", "REDIS_ADDR=" + r.Addr, "LIVE_FILE=" + live,
		"DRAIN_DELAY=1s", "WORK_DELAY=2s"}, extraEnv...)
	p := start(t, bin, env...)
	url := "http://" + p.Addr
	client := &http.Client{Timeout: 5 * time.Second}
	v := violations{}
	var ok int64
	post := func() error {
		resp, err := client.Post(url+"/incr", "text/plain", nil)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		ok++
		return nil
	}
	for range 5 {
		if err := post(); err != nil {
			t.Fatalf("POST /incr before the signal: %v", err)
		}
	}
	if !exists(live) {
		v.add(marker, "no marker while serving")
	}

	t0 := time.Now()
	p.Signal(syscall.SIGTERM)
	// The first /ready that says the drain has begun must answer as the
	// policy says. The delay's end is an order, not a time: what fails
	// after the app logged "drain delay over" was this test's schedule
	// being late on a busy machine, not the server.
	delayOver := func() bool { return strings.Contains(p.Stderr(), "drain delay over") }
	wantCode := map[string]int{"serving": 200, "not-ready": 503}[wantPolicy]
	code, body := 0, ""
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		resp, err := client.Get(url + "/ready")
		if err != nil {
			if delayOver() {
				t.Skipf("inconclusive: the drain delay ended before this test read /ready once (%s after SIGTERM)", time.Since(t0))
			}
			break
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		code, body = resp.StatusCode, string(b)
		if strings.Contains(body, "draining") || code != 200 {
			break
		}
	}
	if code != wantCode || !strings.Contains(body, "draining") {
		v.add(readiness, "/ready during the delay: %d %q, want %d draining (%s)", code, body, wantCode, wantPolicy)
	} else {
		t.Logf("/ready said draining (%d) %s after SIGTERM", code, time.Since(t0).Round(time.Microsecond))
	}
	// The endpoints still route here until the delay ends: keep sending
	// until the app says it is over (the load's schedule: a request every
	// 10 ms).
	for !delayOver() {
		if err := post(); err != nil {
			if !delayOver() {
				v.add(refused, "POST /incr %s after SIGTERM, before the drain delay ended: %v", time.Since(t0).Round(time.Millisecond), err)
			}
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Increments started during the delay are pending until 2s after it.
	if !exists(live) {
		select {
		case <-p.Done():
		default:
			v.add(marker, "marker gone while work was pending")
		}
	}
	code, err := p.Wait(20 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		v.add(exitCode, "exit status %d", code)
	}
	if exists(live) {
		v.add(marker, "marker left after exit")
	}
	n, err := r.Count(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != ok {
		v.add(lost, "counter %d, but %d requests answered 200: %d increments lost", n, ok, ok-n)
	}
	t.Logf("%s: %d answered 200, counter %d, exit %d", filepath.Base(bin), ok, n, code)
	return v
}

func TestDrainLosesNothing(t *testing.T) {
	for _, policy := range []string{"serving", "not-ready"} {
		t.Run(policy, func(t *testing.T) {
			if v := drainScenario(t, bins["app"], policy, "DRAIN_READINESS="+policy); len(v) > 0 {
				t.Fatalf("violations: %v", v)
			}
		})
	}
}

// Each naive server must be caught by the same scenario, for the reason
// it is unsafe; otherwise the scenario cannot fail and proves nothing.
func TestDrainNegativeControls(t *testing.T) {
	tests := []struct {
		name, bin, policy string
		env               string
		want              []string
	}{
		{"hard", "badserver", "serving", "MODE=hard", []string{refused, lost, exitCode}},
		// A 503 that leaks a 200 where the policy wants 503.
		{"bodyfirst", "badserver", "not-ready", "MODE=bodyfirst", []string{readiness}},
		{"nowait", "badserver", "serving", "MODE=nowait", []string{lost}},
		// Not ready at the signal where the default wants serving: the
		// pod would opt out of Kubernetes' terminating-endpoint fallback.
		{"app not ready at the signal", "app", "serving", "DRAIN_READINESS=not-ready", []string{readiness}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := drainScenario(t, bins[tt.bin], tt.policy, tt.env)
			for _, kind := range tt.want {
				if _, ok := v[kind]; !ok {
					t.Errorf("the scenario did not catch %q on the %s server (caught: %v)", kind, tt.name, v)
				}
			}
			t.Logf("caught: %v", v)
		})
	}
}

// waitDraining waits until /ready at url says the drain has begun: 200
// "draining" under the default readiness policy, 503 "not ready: draining"
// under DRAIN_READINESS=not-ready.
func waitDraining(t *testing.T, url string) {
	t.Helper()
	testutil.WaitFor(t, "/ready to say draining", func() bool {
		resp, err := http.Get(url + "/ready")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return strings.Contains(string(b), "draining")
	})
}

func TestSecondSignalExitsAtOnce(t *testing.T) {
	tests := []struct {
		name          string
		first, second syscall.Signal
	}{
		{"SIGTERM twice", syscall.SIGTERM, syscall.SIGTERM},
		{"SIGINT then SIGTERM", syscall.SIGINT, syscall.SIGTERM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := filepath.Join(t.TempDir(), "live")
			p := start(t, bins["app"], "ADDR=127.0.0.1:0", "LIVE_FILE="+live, "WORK_DELAY=5s")
			resp, err := http.Post("http://"+p.Addr+"/incr", "", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			p.Signal(tt.first)
			// The drain has begun (signals are not queued: a second
			// one sent too soon can merge with the first).
			waitDraining(t, "http://"+p.Addr)
			t0 := time.Now()
			p.Signal(tt.second)
			// The drain would take DRAIN_DELAY (5s) and WORK_DELAY; the
			// exit code says which ended it (5 is the second signal's
			// only), so the wait is generous. BENCHMARKS.md measures how
			// soon it exits.
			code, err := p.Wait(30 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("exit %d %s after the second signal", code, time.Since(t0))
			if code != health.ExitInterrupted {
				t.Fatalf("exit %d, want %d", code, health.ExitInterrupted)
			}
			if exists(live) {
				t.Fatal("marker left after the second signal")
			}
			// The answered increment it drops is reported.
			if log := p.Stderr(); !strings.Contains(log, `end="second signal"`) || !strings.Contains(log, "tasks_abandoned=1") {
				t.Fatalf("the drain report does not count the dropped increment:\n%s", log)
			}
		})
	}
}

func TestShutdownTimeoutSaysWhatWasAbandoned(t *testing.T) {
	// Redis is down for the whole drain: every increment retries until
	// the deadline and is abandoned.
	down := testutil.RefusedAddr(t)
	live := filepath.Join(t.TempDir(), "live")
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "LIVE_FILE="+live,
		"REDIS_ADDR="+down,
		"DRAIN_DELAY=200ms", "WORK_DELAY=100ms", "SHUTDOWN_TIMEOUT=2s", "IDLE_CLOSE=100ms")
	for range 3 {
		resp, err := http.Post("http://"+p.Addr+"/incr", "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST /incr: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	t0 := time.Now()
	p.Signal(syscall.SIGTERM)
	code, err := p.Wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	if code != health.ExitShutdownTimeout {
		t.Fatalf("exit %d, want %d", code, health.ExitShutdownTimeout)
	}
	if took < 1800*time.Millisecond { // the phases end a tenth before the deadline
		t.Fatalf("exited %s after SIGTERM, before the 2s deadline less its tenth", took)
	}
	if !strings.Contains(p.Stderr(), "3 background tasks abandoned") {
		t.Fatalf("log does not say 3 tasks were abandoned:\n%s", p.Stderr())
	}
	if exists(live) {
		t.Fatal("marker left after the timeout")
	}
}

func TestBadConfigurationExits2BeforeListening(t *testing.T) {
	dir := t.TempDir()
	link := filepath.Join(dir, "link")
	os.Symlink(filepath.Join(dir, "target"), link)
	tests := []struct {
		name string
		env  []string
		want string
	}{
		{"bad duration", []string{"SHUTDOWN_TIMEOUT=abc"}, "SHUTDOWN_TIMEOUT"},
		{"no unit", []string{"DRAIN_DELAY=5"}, "DRAIN_DELAY"},
		{"negative", []string{"WORK_DELAY=-1s"}, "WORK_DELAY"},
		{"delay not below timeout", []string{"DRAIN_DELAY=30s"}, "DRAIN_DELAY"},
		{"negative timeout", []string{"SHUTDOWN_TIMEOUT=-1s"}, "SHUTDOWN_TIMEOUT"}, // 0 is the default (healthenv)
		{"DRAIN_DELAY=0 is the default 5s: WORK_DELAY cannot fit", []string{"DRAIN_DELAY=0", "SHUTDOWN_TIMEOUT=8s", "WORK_DELAY=5s"}, "WORK_DELAY"},
		{"marker folder missing", []string{"LIVE_FILE=" + filepath.Join(dir, "none", "live")}, "LIVE_FILE"},
		{"marker is a folder", []string{"LIVE_FILE=" + dir}, "LIVE_FILE"},
		{"marker is a symlink", []string{"LIVE_FILE=" + link}, "LIVE_FILE"},
		// Nothing listens, the gRPC and admin listeners neither.
		{"marker folder missing, with gRPC and admin", []string{"LIVE_FILE=" + filepath.Join(dir, "none", "live"),
			"GRPC_ADDR=127.0.0.1:0", "ADMIN_ADDR=127.0.0.1:0"}, "LIVE_FILE"},
		{"bad max age", []string{"LIVE_MAX_AGE=soon"}, "LIVE_MAX_AGE"},
		{"bad address", []string{"ADDR=nonsense"}, "ADDR"},
		{"bad port", []string{"ADDR=:99999"}, "ADDR"},
		{"bad gRPC address", []string{"GRPC_ADDR=nonsense"}, "GRPC_ADDR"},
		{"bad admin port", []string{"ADMIN_ADDR=:99999"}, "ADMIN_ADDR"},
		{"admin on the gRPC port", []string{"GRPC_ADDR=127.0.0.1:9090", "ADMIN_ADDR=127.0.0.1:9090"}, "ADMIN_ADDR"},
		{"unknown argument", []string{}, "unknown command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			live := filepath.Join(t.TempDir(), "live")
			env := append([]string{"ADDR=127.0.0.1:0", "LIVE_FILE=" + live}, tt.env...)
			var args []string
			if tt.want == "unknown command" {
				args = []string{"bogus"}
			}
			p, err := harness.Launch(bins["app"], env, args...)
			if err != nil {
				t.Fatal(err)
			}
			code, err := p.Wait(10 * time.Second)
			if err != nil {
				p.Kill()
				t.Fatal(err)
			}
			lines := harness.Lines(p.Stderr())
			if code != 2 || len(lines) != 1 || !strings.Contains(lines[0], tt.want) {
				t.Fatalf("exit %d, stderr %q; want 2 and one line naming %s", code, lines, tt.want)
			}
			if exists(live) {
				t.Fatal("marker created despite the bad configuration")
			}
		})
	}
	if _, err := os.Lstat(filepath.Join(dir, "target")); err == nil {
		t.Fatal("wrote through the symlink")
	}
}

// TestLiveWithoutShell runs `app live` and `probe live` in a root that
// holds nothing but the static binary and the marker's folder, as uid
// 65532: no shell, no cat, no libc.
func TestLiveWithoutShell(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root; chroot needs it")
		}
		t.Skip("chroot needs root")
	}
	for _, name := range []string{"app", "probe"} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			os.Chmod(root, 0o755)
			bin := filepath.Join(root, name)
			b, err := os.ReadFile(bins[name])
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(bin, b, 0o755); err != nil {
				t.Fatal(err)
			}
			tmp := filepath.Join(root, "tmp")
			os.Mkdir(tmp, 0o1777)
			os.Chmod(tmp, 0o1777)
			run := func() (int, string) { return chrootRun(t, root, "/"+name, "live") }
			if code, out := run(); code != 1 || !strings.Contains(out, "missing") {
				t.Fatalf("no marker: exit %d %q, want 1 missing", code, out)
			}
			live := filepath.Join(tmp, "live")
			if err := os.WriteFile(live, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			// Planted by another user (root here): it says nothing of
			// the service's process.
			if code, out := run(); code != 1 || !strings.Contains(out, "another user") {
				t.Fatalf("marker owned by root: exit %d %q, want 1 another user", code, out)
			}
			// As the service (uid 65532) writes it.
			if err := os.Chown(live, 65532, 65532); err != nil {
				t.Fatal(err)
			}
			if code, out := run(); code != 0 {
				t.Fatalf("fresh marker: exit %d %q, want 0", code, out)
			}
			old := time.Now().Add(-time.Minute)
			os.Chtimes(live, old, old)
			if code, out := run(); code != 1 || !strings.Contains(out, "stale") {
				t.Fatalf("stale marker: exit %d %q, want 1 stale", code, out)
			}
			for _, fallback := range []string{"bin/sh", "bin/cat", "usr/bin/cat"} {
				if exists(filepath.Join(root, fallback)) {
					t.Fatalf("%s exists in the root", fallback)
				}
			}
		})
	}
}

// TestIdleKeepAliveConnection: a keep-alive connection that is idle when
// the drain delay ends is closed only once it has been idle for IDLE_CLOSE;
// one that carries a request during the drain gets Connection: close and
// is closed by the server. The plain-Shutdown server fails the first.
func TestIdleKeepAliveConnection(t *testing.T) {
	tests := []struct {
		name      string
		bin       string
		env       []string
		wantQuiet bool
	}{
		{"app", bins["app"], nil, true},
		{"plain Shutdown (negative control)", bins["badserver"], []string{"MODE=plainshutdown"}, false},
	}
	// The control closes the idle connection when its 500 ms delay ends:
	// a quiet period of seconds keeps it well apart from the app's.
	const quiet = 3 * time.Second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := append([]string{"ADDR=127.0.0.1:0", "LIVE_FILE=" + filepath.Join(t.TempDir(), "live"),
				"DRAIN_DELAY=500ms", "IDLE_CLOSE=" + quiet.String(), "WORK_DELAY=0s"}, tt.env...)
			p := start(t, tt.bin, env...)
			idle := testutil.Dial(t, p.Addr)
			busy := testutil.Dial(t, p.Addr)
			busy.Get("/count")
			sent := time.Now() // the idle connection is idle from after this
			if resp := idle.Get("/count"); resp.Close {
				t.Fatal("keep-alive refused before the drain")
			}
			p.Signal(syscall.SIGTERM)
			waitDraining(t, "http://"+p.Addr)
			if resp := busy.Get("/count"); !resp.Close {
				t.Fatal("response during the drain lacks Connection: close")
			}
			if err := busy.WaitClosed(testutil.Patience); err != nil {
				t.Fatalf("server did not close the connection after Connection: close: %v", err)
			}
			if err := idle.WaitClosed(testutil.Patience); err != nil {
				t.Fatal(err)
			}
			idleFor := time.Since(sent)
			t.Logf("idle connection closed after %s idle", idleFor.Round(time.Millisecond))
			if got := idleFor >= quiet; got != tt.wantQuiet {
				t.Fatalf("closed after %s idle; closed only after the quiet period (%s): %v, want %v", idleFor, quiet, got, tt.wantQuiet)
			}
			if code, _ := p.Wait(10 * time.Second); code != 0 {
				t.Fatalf("exit %d", code)
			}
		})
	}
}

// chrootRun runs argv inside root as uid and gid 65532 (distroless's
// nonroot) with LIVE_FILE=/tmp/live, and returns its exit status and output.
func chrootRun(t *testing.T, root string, argv ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = []string{"LIVE_FILE=/tmp/live", "LIVE_MAX_AGE=30s"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Chroot:     root,
		Credential: &syscall.Credential{Uid: 65532, Gid: 65532},
	}
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %v in %s: %v", argv, root, err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestProbeRunForwardsSignals wraps the app in `probe run`, as a non-Go
// program would be: SIGTERM to the wrapper reaches the child, which drains
// and exits 0; the wrapper exits with its status and removes its marker.
func TestProbeRunForwardsSignals(t *testing.T) {
	dir := t.TempDir()
	wrapperMarker := filepath.Join(dir, "wrapper-live")
	p, err := harness.Start(bins["probe"], []string{"ADDR=127.0.0.1:0", "LIVE_FILE=" + filepath.Join(dir, "app-live"),
		"DRAIN_DELAY=100ms", "WORK_DELAY=0s", "IDLE_CLOSE=100ms"},
		"run", "--file", wrapperMarker, "--", bins["app"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Kill)
	if !exists(wrapperMarker) {
		t.Fatal("no wrapper marker while the child runs")
	}
	p.Signal(syscall.SIGTERM)
	code, err := p.Wait(10 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 || !strings.Contains(p.Stderr(), "drained, exiting") {
		t.Fatalf("exit %d; the child did not drain:\n%s", code, p.Stderr())
	}
	if exists(wrapperMarker) {
		t.Fatal("wrapper marker left after the child exited")
	}
}
