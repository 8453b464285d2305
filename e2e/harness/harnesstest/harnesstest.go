// Package harnesstest holds the harness's helpers that take a testing.TB.
// It is apart from package harness so that the tools built on the harness
// (the rollout and bench commands) do not link package testing.
package harnesstest

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/drainwell/drainwell/e2e/harness"
)

// Redis starts a real redis-server for tb and stops it at cleanup. It
// skips where none is installed, except in CI (CI set), where that fails.
func Redis(tb testing.TB) *harness.Redis {
	tb.Helper()
	r, err := harness.StartRedis(tb.TempDir())
	if errors.Is(err, harness.ErrNoRedis) && os.Getenv("CI") == "" {
		tb.Skip(err)
	}
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(r.Close)
	return r
}

// Start starts bin with env and args, waits for its ready line, and
// kills it at cleanup, logging its stderr if the test failed.
func Start(tb testing.TB, bin string, env []string, args ...string) *harness.Proc {
	tb.Helper()
	p, err := harness.Start(bin, env, args...)
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
