//lint:file-ignore SA1019 the test is about x/net's h2c handler, deprecated (x/net v0.60) but still in services' code

package e2e

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/h2c"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
)

// golang.org/x/net/http2/h2c's handler (connect-go's documented setup, many
// gRPC-gateway ones) hijacks each connection, so http.Server.Shutdown does
// not see it (golang/go #26682): the drain waits for the hijacked handler
// until the deadline. With http2.ConfigureServer on the same http2.Server,
// Shutdown sends those connections GOAWAY and the drain ends cleanly.
// (Native h2c, http.Protocols, drains as HTTP/1 does: pkg/health's
// TestHTTP2Drains.)
func TestXNetH2CHandler(t *testing.T) {
	tests := []struct {
		name      string
		configure bool // http2.ConfigureServer(hs, h2s)
		wantClean bool
	}{
		{"h2c handler with http2.ConfigureServer", true, true},
		{"h2c handler alone: held to the deadline", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const timeout = 2 * time.Second
			release := make(chan struct{})
			started := make(chan struct{}, 1)
			mux := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/slow" {
					started <- struct{}{}
					<-release
				}
				io.WriteString(w, r.Proto+"\n")
			})
			h2s := &http2.Server{}
			hs := &http.Server{ReadHeaderTimeout: 10 * time.Second}
			if tt.configure {
				if err := http2.ConfigureServer(hs, h2s); err != nil {
					t.Fatal(err)
				}
			}
			srv := health.New(health.Config{
				DrainDelay: 200 * time.Millisecond, ShutdownTimeout: timeout, IdleClose: 50 * time.Millisecond,
				HTTP: hs, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			}, h2c.NewHandler(mux, h2s))
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, stop := context.WithCancel(context.Background())
			result := make(chan error, 1)
			go func() { result <- srv.Serve(ctx, ln) }()
			defer func() { stop(); <-result }()
			testutil.WaitFor(t, "ready", func() bool { return srv.State() == health.StateReady })

			// Prior-knowledge h2c, as a gRPC or connect client speaks it.
			var protocols http.Protocols
			protocols.SetUnencryptedHTTP2(true)
			client := &http.Client{Transport: &http.Transport{Protocols: &protocols}}
			url := "http://" + ln.Addr().String()
			resp, err := client.Get(url + "/")
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != "HTTP/2.0\n" {
				t.Fatalf("served %q, want HTTP/2.0 over h2c", body)
			}
			slow := make(chan error, 1)
			go func() {
				resp, err := client.Get(url + "/slow")
				if err == nil {
					_, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				slow <- err
			}()
			<-started
			stop() // as SIGTERM
			// The stream finishes once the drain has closed the listener.
			testutil.WaitFor(t, "the listener closed", func() bool { return testutil.Refused(ln.Addr().String()) })
			close(release)
			err2 := testutil.Receive(t, "Serve to return", result)
			result <- err2
			t.Logf("Serve = %v", err2)
			if err := <-slow; err != nil {
				t.Fatalf("stream in flight at the signal: %v", err)
			}
			if tt.wantClean {
				if err2 != nil {
					t.Fatalf("Serve = %v, want a clean drain", err2)
				}
				return
			}
			if !errors.Is(err2, health.ErrShutdownTimeout) {
				t.Fatalf("Serve = %v; the hijacked h2c connection was expected to hold the drain to the deadline", err2)
			}
		})
	}
}
