package health

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/drainwell/drainwell/internal/testutil"
)

// A service with no HTTP handler opens no HTTP listener unless it asks
// (a gRPC-only service took :8080, and collided there); with Addr set it
// gets one answering /ready and /live.
func TestNoMainListenerWithoutHandler(t *testing.T) {
	for _, tt := range []struct {
		name     string
		addr     string
		wantMain bool
	}{{"no handler, no address", "", false}, {"no handler, an address", "127.0.0.1:0", true}} {
		t.Run(tt.name, func(t *testing.T) {
			log := &testutil.Buffer{}
			srv := newServer(Config{Addr: tt.addr, DrainDelay: NoDrainDelay, Logger: slog.New(slog.NewTextHandler(log, nil))}, nil, make(chan os.Signal))
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- srv.Run(ctx) }()
			testutil.WaitFor(t, "serving", func() bool { return srv.State() == StateReady })
			hasMain := srv.Addr() != nil
			cancel()
			if err := testutil.Receive(t, "Run to return", done); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if hasMain != tt.wantMain {
				t.Fatalf("main listener: %v, want %v", hasMain, tt.wantMain)
			}
			if got := strings.Contains(log.String(), " addr="); got != tt.wantMain {
				t.Fatalf("the serving line names an HTTP address: %v, want %v:\n%s", got, tt.wantMain, log)
			}
		})
	}
}

// Ready answers as /ready does, checks included, and ReadyChanged tells
// of each change without running the checks.
func TestReadyAndReadyChanged(t *testing.T) { inBubble(t, testReadyAndReadyChanged) }

func testReadyAndReadyChanged(t *testing.T) {
	var failing atomic.Bool
	h := newHarness(t, nil)
	var runs atomic.Int64
	h.srv.AddCheck("database", func(context.Context) error {
		runs.Add(1)
		if failing.Load() {
			return errors.New("down")
		}
		return nil
	})
	h.start()
	if err := h.srv.Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v with the check passing", err)
	}
	ready, next := h.srv.ReadyChanged()
	if !ready {
		t.Fatal("ReadyChanged says not ready after a passing Ready")
	}
	before := runs.Load()
	failing.Store(true)
	if err := h.srv.Ready(context.Background()); err == nil || !strings.Contains(err.Error(), "database") {
		t.Fatalf("Ready = %v with the check failing, want it named", err)
	}
	select {
	case <-next:
	default:
		t.Fatal("ReadyChanged's channel not closed by the change")
	}
	if ready, _ := h.srv.ReadyChanged(); ready || runs.Load() != before+1 {
		t.Fatalf("ReadyChanged = %v after the failure (%d check runs, want %d)", ready, runs.Load(), before+1)
	}
	if code, _, _ := h.get(h.url + "/ready"); code != 503 {
		t.Fatalf("/ready = %d while Ready fails, want 503", code)
	}
	failing.Store(false)
	h.signal() // draining, inside the delay (the bubble's clock stands still)
	if err := h.srv.Ready(context.Background()); err != nil {
		t.Fatalf("Ready = %v during the delay, want nil (ReadyWhileServing)", err)
	}
}
