package health

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"
	"time"

	"github.com/drainwell/drainwell/internal/testutil"
)

// discard is a ResponseWriter that allocates nothing, so that the
// in-process benchmarks measure the handlers alone.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(b []byte) (int, error) { return len(b), nil }
func (d *discard) WriteHeader(int)             {}

var trivial = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })

func benchServer(b *testing.B) *Server {
	b.Helper()
	s := New(Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, trivial)
	s.setState(StateReady)
	return s
}

// BenchmarkHandler is the request path in process: the trivial handler
// bare, and behind the Server's handler (draining check, probe routes,
// HTTP/2 marking).
func BenchmarkHandler(b *testing.B) {
	s := benchServer(b)
	for _, bc := range []struct {
		name string
		h    http.Handler
		path string
	}{
		{"bare", trivial, "/work"},
		{"wrapped", s.main.hs.Handler, "/work"},
		{"ready", s.main.hs.Handler, "/ready"},
		{"live", s.main.hs.Handler, "/live"},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := httptest.NewRequest("GET", bc.path, nil)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				w := &discard{h: http.Header{}}
				for pb.Next() {
					bc.h.ServeHTTP(w, req)
				}
			})
		})
	}
}

// BenchmarkHTTP is the request path over real HTTP on loopback with
// keep-alive: a plain http.Server against pkg/health's, whose connection
// tracking (ConnState) runs on every request too.
//
// Whichever runs second in a process tends to be slower (a warmer heap,
// the first server's leftovers); HEALTH_BENCH_REVERSE=1 swaps the order,
// and `make bench` alternates it.
func BenchmarkHTTP(b *testing.B) {
	order := []string{"bare", "wrapped"}
	if os.Getenv("HEALTH_BENCH_REVERSE") != "" {
		order = []string{"wrapped", "bare"}
	}
	for _, name := range order {
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			done := make(chan error, 1)
			if name == "bare" {
				// The same timeouts as New's defaults: only the
				// tracking differs.
				srv := &http.Server{Handler: trivial, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
				go srv.Serve(ln)
				defer srv.Close()
			} else {
				s := New(Config{
					DrainDelay: -1, IdleClose: time.Millisecond,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
				}, trivial)
				ctx, stop := context.WithCancel(context.Background())
				go func() { done <- s.Serve(ctx, ln) }()
				testutil.WaitFor(b, "ready", func() bool { return s.State() == StateReady })
				defer func() { stop(); <-done }()
			}
			testutil.GetParallel(b, "http://"+ln.Addr().String()+"/work")
		})
	}
}
