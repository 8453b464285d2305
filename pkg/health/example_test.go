package health_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/drainwell/drainwell/pkg/health"
)

// A service wires its handler, readiness checks, background work and
// cleanup into a Server; Run does the rest. In production the Config is
// just the marker and the durations, and SIGTERM starts the drain; here
// cancelling Run's context does, so that the example stops itself.
func Example() {
	dir, _ := os.MkdirTemp("", "example")
	defer os.RemoveAll(dir)

	var srv *health.Server
	mux := http.NewServeMux()
	mux.HandleFunc("POST /orders", func(w http.ResponseWriter, r *http.Request) {
		// Background work the drain waits for; its context ends only at
		// the shutdown deadline.
		err := srv.TryGo(func(ctx context.Context) { /* write to the database */ })
		if err != nil {
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	srv = health.New(health.Config{
		DrainDelay:      50 * time.Millisecond, // default 5s
		ShutdownTimeout: 2 * time.Second,       // default 25s
		IdleClose:       10 * time.Millisecond, // default 1s
		LiveFile:        filepath.Join(dir, "live"),
		LiveMaxAge:      30 * time.Second,
		Logger:          slog.New(slog.NewTextHandler(io.Discard, nil)),
	}, mux)
	srv.AddCheck("database", func(ctx context.Context) error { return nil })
	srv.OnStop(func(ctx context.Context) error { fmt.Println("database closed"); return nil })

	ln, _ := net.Listen("tcp", "127.0.0.1:0") // or srv.Run(ctx) on Config.Addr
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, ln) }()
	for srv.State() != health.StateReady { // until it serves, or fails to
		select {
		case err := <-done:
			fmt.Println("serve:", err)
			return
		case <-time.After(time.Millisecond):
		}
	}
	resp, _ := http.Get("http://" + ln.Addr().String() + "/ready")
	fmt.Println("ready:", resp.StatusCode)
	resp.Body.Close()

	stop() // as SIGTERM from the kubelet does
	fmt.Println("drained:", <-done)
	// Output:
	// ready: 200
	// database closed
	// drained: <nil>
}
