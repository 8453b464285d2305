package harness

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// TestRedis starts a real redis-server for tb and stops it at cleanup. It
// skips where none is installed, except in CI (CI set), where that fails.
func TestRedis(tb testing.TB) *Redis {
	tb.Helper()
	r, err := StartRedis(tb.TempDir())
	if errors.Is(err, ErrNoRedis) && os.Getenv("CI") == "" {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	return r
}

// TestStart starts bin with env and args, waits for its ready line, and
// kills it at cleanup, logging its stderr if the test failed.
func TestStart(tb testing.TB, bin string, env []string, args ...string) *Proc {
	tb.Helper()
	p, err := Start(bin, env, args...)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		p.Kill()
		if tb.Failed() {
			tb.Logf("%s stderr:\n%s", filepath.Base(bin), p.Stderr())
		}
	})
	return p
}
