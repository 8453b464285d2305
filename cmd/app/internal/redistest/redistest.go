// Package redistest starts a real redis-server for the example's own tests,
// as e2e/harness does for the process tests (which the example's module
// cannot import: e2e imports it). Only tests import it.
package redistest

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Start starts a redis-server without persistence on a loopback port for
// tb, stops it at cleanup, and returns its address and a client. It skips
// where redis-server is not installed, except in CI (CI set), where that
// fails.
func Start(tb testing.TB) (addr string, client *redis.Client) {
	tb.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("CI") == "" {
			tb.Skip("redis-server not found (apt-get install redis-server)")
		}
		tb.Fatal("redis-server not found (apt-get install redis-server)")
	}
	dir := tb.TempDir()
	var out bytes.Buffer
	for range 5 { // the free port may be taken before redis-server binds it
		port := freePort(tb)
		addr = "127.0.0.1:" + strconv.Itoa(port)
		cmd := exec.Command("redis-server", "--port", strconv.Itoa(port), "--bind", "127.0.0.1", // #nosec G204 -- a test's own redis-server, on its port and folder
			"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "no")
		out.Reset()
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			tb.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		client = redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
		if up(client, exited) {
			tb.Cleanup(func() {
				client.Close()
				_ = cmd.Process.Kill()
				<-exited
			})
			return addr, client
		}
		client.Close()
		_ = cmd.Process.Kill()
		<-exited
	}
	tb.Fatalf("redis-server did not start:\n%s", out.String())
	return "", nil
}

// up waits up to 10 s for the server to answer, or to exit.
func up(c *redis.Client, exited <-chan struct{}) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); {
		select {
		case <-exited:
			return false
		default:
		}
		if c.Ping(context.Background()).Err() == nil {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

func freePort(tb testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
