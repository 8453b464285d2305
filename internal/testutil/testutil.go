// Package testutil holds what the repository's tests share, in every
// module (an internal package of the root module is importable by the
// modules below it): waits that are bounded and say what they waited for,
// a log buffer safe for concurrent writers, loopback listeners, an address
// that refuses connections, and a raw keep-alive HTTP/1.1 connection.
//
// Tests assert conditions and orders, not latencies: every wait here has a
// deadline measured in seconds, generous for a busy 2-core machine running
// the race detector, and fails the test with what it was waiting for.
package testutil

import (
	"testing"
	"time"
)

// Patience is how long a wait lasts before it fails the test: a bound for
// a hang, never a latency target.
const Patience = 30 * time.Second

// WaitFor polls cond until it holds, or fails the test after Patience
// naming what. Call it on the test's goroutine.
func WaitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if !eventually(Patience, cond) {
		t.Fatalf("timed out after %s waiting for %s", Patience, what)
	}
}

// eventually polls cond until it holds (true) or d has passed (false).
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for pause := time.Millisecond; !cond(); pause = min(2*pause, 20*time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(pause)
	}
	return true
}

// Receive returns the value ch delivers, or fails the test after Patience
// naming what.
func Receive[T any](t testing.TB, what string, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(Patience):
		t.Fatalf("timed out after %s waiting for %s", Patience, what)
		var zero T
		return zero
	}
}
