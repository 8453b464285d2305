// Package harness starts the real things the process tests and the rollout
// harness run against: the project's binaries, built static, as processes;
// and a real redis-server from Debian's packages on a loopback port.
package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

// Build builds the main packages (import paths such as "github.com/drainwell/drainwell/cmd/app")
// into dir as static, stripped binaries, as the image does, and returns
// their paths by base name.
func Build(dir string, pkgs ...string) (map[string]string, error) {
	unlock, err := lockBuilds()
	if err != nil {
		return nil, err
	}
	defer unlock()
	out := make(map[string]string, len(pkgs))
	for _, pkg := range pkgs {
		bin := filepath.Join(dir, filepath.Base(pkg))
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", bin, pkg)
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
		}
		out[filepath.Base(pkg)] = bin
	}
	return out, nil
}

// lockBuilds takes a lock that every Build on this machine shares. go test
// runs packages side by side, and two of them building the app at once
// would each compile all of it: the go command shares its cache, not work
// in progress. The second build waits, then finds the first one's work in
// the cache.
func lockBuilds() (unlock func(), err error) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), "drainwell-harness-build.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("build lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("build lock: %w", err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// ErrNoRedis means redis-server is not installed.
var ErrNoRedis = errors.New("redis-server not found (apt-get install redis-server)")

// Redis is a redis-server process on 127.0.0.1.
type Redis struct {
	Addr   string
	Client *redis.Client
	dir    string
	cmd    *exec.Cmd
}

// freePort returns a TCP port that was free on host a moment ago, for
// redis-server, which cannot listen on port 0 and tell (StartRedis retries
// when another process took it meanwhile). "Nothing listens here" is
// testutil.RefusedAddr, which holds its port.
func freePort(host string) (int, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// StartRedis starts a redis-server without persistence, its files in dir.
func StartRedis(dir string) (*Redis, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, ErrNoRedis
	}
	var lastErr error
	for range 5 { // the free port may be taken before redis binds it
		port, err := freePort("127.0.0.1")
		if err != nil {
			return nil, err
		}
		r := &Redis{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: dir}
		if lastErr = r.start(); lastErr == nil {
			return r, nil
		}
	}
	return nil, lastErr
}

func (r *Redis) start() error {
	_, port, _ := net.SplitHostPort(r.Addr)
	r.cmd = exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", r.dir, "--protected-mode", "no")
	var logBuf bytes.Buffer
	r.cmd.Stdout, r.cmd.Stderr = &logBuf, &logBuf
	if err := r.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	go func() { r.cmd.Wait(); close(exited) }()
	if r.Client == nil {
		r.Client = redis.NewClient(&redis.Options{Addr: r.Addr, MaxRetries: -1})
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited: %s", logBuf.String())
		default:
		}
		if r.Client.Ping(context.Background()).Err() == nil {
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	r.cmd.Process.Kill()
	return errors.New("redis-server did not answer within 10s")
}

// Stop ends the server (SIGKILL: the tests need no persistence).
func (r *Redis) Stop() {
	if r.cmd != nil && r.cmd.Process != nil {
		r.cmd.Process.Kill()
		r.cmd.Process.Wait()
	}
}

// Restart starts the server again on the same address, empty.
func (r *Redis) Restart() error { return r.start() }

// Count reads the counter key.
func (r *Redis) Count(ctx context.Context) (int64, error) {
	n, err := r.Client.Get(ctx, "counter").Int64()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	return n, err
}

// Close stops the server and closes the client.
func (r *Redis) Close() {
	r.Stop()
	if r.Client != nil {
		r.Client.Close()
	}
}

// Proc is a started process of ours that logs "msg=serving addr=HOST:PORT".
type Proc struct {
	Cmd  *exec.Cmd
	Addr string // from its ready line
	// from its ready line too, when it serves them
	AdminAddr, GRPCAddr string
	stderr              *syncBuffer
	done                chan struct{}
	err                 error // from Wait, once done is closed
}

var (
	readyLine = regexp.MustCompile(`msg=serving addr=(\S+)`)
	adminAddr = regexp.MustCompile(`msg=serving .*admin_addr=(\S+)`)
	grpcAddr  = regexp.MustCompile(`grpc_addr=(\S+)`)
)

// Start runs bin with env (added to a minimal environment) and args and
// waits up to 10s for its ready line.
func Start(bin string, env []string, args ...string) (*Proc, error) {
	return StartCmd(command(bin, env, args...))
}

// StartCmd is Start for a prepared command (a chroot, say); its Stdout and
// Stderr are replaced.
func StartCmd(cmd *exec.Cmd) (*Proc, error) {
	bin := cmd.Path
	p, err := LaunchCmd(cmd)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := readyLine.FindStringSubmatch(p.Stderr()); m != nil {
			p.Addr = m[1]
			if m := adminAddr.FindStringSubmatch(p.Stderr()); m != nil {
				p.AdminAddr = m[1]
			}
			if m := grpcAddr.FindStringSubmatch(p.Stderr()); m != nil {
				p.GRPCAddr = m[1]
			}
			return p, nil
		}
		select {
		case <-p.done:
			return nil, fmt.Errorf("%s exited before it was ready: %v\n%s", bin, p.err, p.Stderr())
		case <-time.After(5 * time.Millisecond):
		}
	}
	p.Cmd.Process.Kill()
	return nil, fmt.Errorf("%s not ready within 10s:\n%s", bin, p.Stderr())
}

// Launch runs bin without waiting for anything.
func Launch(bin string, env []string, args ...string) (*Proc, error) {
	return LaunchCmd(command(bin, env, args...))
}

func command(bin string, env []string, args ...string) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, env...)
	return cmd
}

// LaunchCmd is Launch for a prepared command; its Stdout and Stderr are
// replaced.
func LaunchCmd(cmd *exec.Cmd) (*Proc, error) {
	p := &Proc{Cmd: cmd, stderr: &syncBuffer{}, done: make(chan struct{})}
	p.Cmd.Stdout = io.Discard
	p.Cmd.Stderr = p.stderr
	if err := p.Cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// Stderr returns what the process has written to stderr so far.
func (p *Proc) Stderr() string { return p.stderr.String() }

// Signal sends sig to the process.
func (p *Proc) Signal(sig syscall.Signal) error { return p.Cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the exit and returns the exit status (-1 if
// a signal ended the process).
func (p *Proc) Wait(timeout time.Duration) (int, error) {
	select {
	case <-p.done:
		return p.Cmd.ProcessState.ExitCode(), nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("process still running after %s", timeout)
	}
}

// Kill ends the process if it still runs.
func (p *Proc) Kill() {
	select {
	case <-p.done:
	default:
		p.Cmd.Process.Kill()
		<-p.done
	}
}

// Lines returns the non-empty lines of s.
func Lines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// syncBuffer is a child's stderr, copied by one goroutine while another
// reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
