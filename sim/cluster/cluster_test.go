package cluster

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/internal/testutil"
)

// The simulated cluster's own behaviour, under -race (TestRollout runs
// without it): a Service routes to ready endpoints; every pod deleted at
// once leaves the terminating ones serving the Service (KEP-1669's
// fallback) after the lag; a rolling update replaces every pod; Shutdown
// waits for every pod to exit.
func TestClusterRoutesAndFallsBack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the example app")
	}
	bins, err := harness.Build(t.TempDir(), "github.com/drainwell/drainwell/cmd/app")
	if err != nil {
		t.Fatal(err)
	}
	spec := Spec{
		Replicas: 2, MaxSurge: 1, Port: 8080, ProbePort: 8080, Grace: 10 * time.Second,
		Env:       map[string]string{"DRAIN_DELAY": "2s", "WORK_DELAY": "0", "LIVE_FILE": "/run/live/live"},
		Readiness: Probe{HTTPPath: "/ready", Period: 200 * time.Millisecond, Timeout: time.Second, Success: 1, Failure: 1},
	}
	lag := 300 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	c, err := Start(ctx, Config{Spec: spec, Bin: bins["app"], Dir: t.TempDir(), Net: "127.0.77", Lag: lag})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Shutdown(context.Background())
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 5 * time.Second}
	get := func() int {
		resp, err := client.Get("http://" + c.ServiceAddr() + "/count")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(); code != 200 {
		t.Fatalf("GET through the Service = %d, want 200", code)
	}

	c.DeleteAll()
	// After the lag the view has no ready endpoint and both old pods
	// serving and terminating: the proxy falls back to them.
	testutil.WaitFor(t, "the fallback view", func() bool {
		for _, n := range c.Notes() {
			if strings.Contains(n.Note, "view: ready [], serving terminating [") && strings.Count(n.Note, ":8080") == 2 {
				return true
			}
		}
		return false
	})
	if code := get(); code != 200 {
		t.Fatalf("GET while every endpoint terminates = %d, want 200 (the fallback)", code)
	}
	testutil.WaitFor(t, "the replacements ready", func() bool { return c.proxy.viewSize() == spec.Replicas })

	if err := c.RollingUpdate(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Pods() {
		if !p.terminating.Load() && p.Revision != 2 {
			t.Fatalf("pod %s of revision %d after the rolling update", p.Name, p.Revision)
		}
	}
	if err := c.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Pods()); n != 0 {
		t.Fatalf("%d pods left after Shutdown", n)
	}
	exits := 0
	for _, e := range c.Events() {
		if e.Phase == Exited {
			exits++
			if !strings.HasPrefix(e.Note, "exit 0") {
				t.Fatalf("pod %s: %s, want exit 0", e.Pod, e.Note)
			}
		}
	}
	if exits != 6 {
		t.Fatalf("%d pods exited, want 6 (2 deleted, 2 replaced, 2 shut down)", exits)
	}
}
