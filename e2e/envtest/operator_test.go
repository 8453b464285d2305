package envtestproof

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

// operator is one process of the example operator: a pod of its Deployment.
type operator struct {
	name    string
	webhook string // host:port the proxy routes to
	probe   string // the manager's health probe address
	logPath string
	cmd     *exec.Cmd

	done     chan struct{} // closed when the process has exited
	mu       sync.Mutex
	exitCode int
	exitedAt time.Time
	termAt   time.Time
}

// operatorConfig is what every process of one run shares.
type operatorConfig struct {
	binary     string
	kubeconfig string
	certDir    string
	namespace  string // of the leader election Lease
	logDir     string
}

// startOperator starts a process as the Deployment's manifest runs a pod:
// --leader-elect, the drain's settings in the environment, its own ports.
func startOperator(t *testing.T, cfg operatorConfig, name string) *operator {
	t.Helper()
	op := &operator{
		name:    name,
		webhook: net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		probe:   net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t))),
		logPath: filepath.Join(cfg.logDir, name+".log"),
		done:    make(chan struct{}),
	}
	_, port, _ := net.SplitHostPort(op.webhook)
	logFile, err := os.Create(op.logPath)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	op.cmd = exec.Command(cfg.binary,
		"--leader-elect",
		"--leader-election-namespace="+cfg.namespace,
		"--health-probe-bind-address="+op.probe,
		"--metrics-bind-address=0",
		"--webhook-port="+port,
		"--webhook-cert-path="+cfg.certDir,
	)
	op.cmd.Env = append(os.Environ(),
		"KUBECONFIG="+cfg.kubeconfig,
		"POD_NAME="+name,
		"DRAIN_DELAY="+drainDelay.String(),
		"SHUTDOWN_TIMEOUT=25s",
		// The marker is the pod's own (an emptyDir in a cluster).
		"LIVE_FILE="+filepath.Join(cfg.logDir, name+".live"),
	)
	op.cmd.Stdout = logFile
	op.cmd.Stderr = logFile
	if err := op.cmd.Start(); err != nil {
		logFile.Close()
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		err := op.cmd.Wait()
		logFile.Close()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			code = -1
		}
		op.mu.Lock()
		op.exitCode, op.exitedAt = code, time.Now()
		op.mu.Unlock()
		close(op.done)
	}()
	t.Cleanup(func() {
		select {
		case <-op.done:
		default:
			op.cmd.Process.Kill()
			<-op.done
		}
		if t.Failed() {
			dumpLog(t, op.logPath)
		}
	})
	return op
}

// waitReady waits until the manager's /readyz answers 200, as the kubelet's
// readiness probe would see it.
func (op *operator) waitReady(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: time.Second}
	waitFor(t, 60*time.Second, op.name+" ready", func() bool {
		select {
		case <-op.done:
			t.Fatalf("%s exited (code %d) before it was ready", op.name, op.code())
		default:
		}
		resp, err := client.Get("http://" + op.probe + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

// terminate sends SIGTERM, as the kubelet does at a pod's deletion.
func (op *operator) terminate(t *testing.T) {
	t.Helper()
	op.mu.Lock()
	op.termAt = time.Now()
	op.mu.Unlock()
	if err := op.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("%s: SIGTERM: %v", op.name, err)
	}
}

// wait waits for the process to exit and returns its exit code.
func (op *operator) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-op.done:
		return op.code()
	case <-time.After(timeout):
		t.Fatalf("%s still running %v after SIGTERM", op.name, timeout)
		return -1
	}
}

func (op *operator) code() int {
	op.mu.Lock()
	defer op.mu.Unlock()
	return op.exitCode
}

// freePort returns a port the kernel had free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// waitFor polls cond every 50 ms until it holds, or fails the test.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			t.Fatalf("waited %v for %s", timeout, what)
		case <-tick.C:
		}
	}
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return string(b)
}

// buildOperator builds a main package of the example operator, outside
// the workspace as its README says, into dir.
func buildOperator(t *testing.T, pkg, out string) {
	t.Helper()
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = filepath.Join("..", "..", "examples", "operator")
	cmd.Env = append(os.Environ(), "GOWORK=off")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, b)
	}
}

func (op *operator) String() string { return fmt.Sprintf("%s (%s)", op.name, op.webhook) }
