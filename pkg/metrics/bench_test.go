package metrics_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
	"github.com/drainwell/drainwell/pkg/metrics"
)

// BenchmarkRequestPath is a trivial handler behind pkg/health over real
// HTTP (keep-alive, loopback, RunParallel), with metrics off and on (the
// collector registered and scraped every second, fifteen times as often as
// Prometheus' default interval). METRICS_BENCH_REVERSE=1 swaps the order;
// `make bench` alternates.
func BenchmarkRequestPath(b *testing.B) {
	order := []string{"off", "on"}
	if os.Getenv("METRICS_BENCH_REVERSE") != "" {
		order = []string{"on", "off"}
	}
	trivial := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	for _, name := range order {
		b.Run(name, func(b *testing.B) {
			srv := health.New(health.Config{DrainDelay: -1, IdleClose: time.Millisecond,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, trivial)
			stopScrapes := func() {}
			if name == "on" {
				reg := prometheus.NewRegistry()
				if err := metrics.Register(reg, srv); err != nil {
					b.Fatal(err)
				}
				ctx, cancel := context.WithCancel(context.Background())
				done := make(chan struct{})
				go func() {
					defer close(done)
					t := time.NewTicker(time.Second)
					defer t.Stop()
					for {
						select {
						case <-t.C:
							if _, err := reg.Gather(); err != nil {
								b.Error(err)
							}
						case <-ctx.Done():
							return
						}
					}
				}()
				stopScrapes = func() { cancel(); <-done }
			}
			ln := testutil.Listen(b)
			ctx, stop := context.WithCancel(context.Background())
			served := make(chan error, 1)
			go func() { served <- srv.Serve(ctx, ln) }()
			testutil.WaitFor(b, "ready", func() bool { return srv.State() == health.StateReady })
			defer func() { stop(); <-served; stopScrapes() }()
			testutil.GetParallel(b, "http://"+ln.Addr().String()+"/work")
		})
	}
}
