// Package probegrpc tests the probe binaries' grpc and https checks against
// real servers: grpc-go with grpc-go's own health service, net/http over
// TLS, and hostile servers that a probe must survive.
package probegrpc

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/grpclog"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/internal/testutil"
)

// testPKI is harness.PKI for a test: a CA in a temporary folder, and
// certificates it issues, failing the test on error.
type testPKI struct {
	t *testing.T
	*harness.PKI
}

func newPKI(t *testing.T, name string) testPKI {
	t.Helper()
	p, err := harness.NewPKI(t.TempDir(), name)
	if err != nil {
		t.Fatal(err)
	}
	return testPKI{t, p}
}

func (p testPKI) caFile() string { return p.CAFile() }

func (p testPKI) issue(t *testing.T, name string, usage x509.ExtKeyUsage) (tls.Certificate, string, string) {
	t.Helper()
	pair, cert, key, err := p.Issue(name, usage)
	if err != nil {
		t.Fatal(err)
	}
	return pair, cert, key
}

var (
	// probeBin is probe-tls, which every case here can use; plainProbeBin
	// is probe, without TLS.
	probeBin, plainProbeBin string
	// serverLog is what grpc-go logs, at every level (set once: grpclog's
	// logger is global).
	serverLog testutil.Buffer
)

func TestMain(m *testing.M) {
	grpclog.SetLoggerV2(grpclog.NewLoggerV2WithVerbosity(&serverLog, &serverLog, &serverLog, 99))
	dir, err := os.MkdirTemp("", "probegrpc")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bins, err := harness.Build(dir, "github.com/drainwell/drainwell/cmd/probe-tls", "github.com/drainwell/drainwell/cmd/probe")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	probeBin, plainProbeBin = bins["probe-tls"], bins["probe"]
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// probe runs probe-tls and returns its exit status, its stderr and how long
// it took.
func probe(t *testing.T, args ...string) (int, string, time.Duration) {
	t.Helper()
	return run(t, probeBin, args...)
}

func run(t *testing.T, bin string, args ...string) (int, string, time.Duration) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	t0 := time.Now()
	err := cmd.Run()
	took := time.Since(t0)
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String(), took
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String(), took
	}
	t.Fatal(err)
	return 0, "", 0
}

// grpcServer serves grpc-go's health service on 127.0.0.1: "" and "app"
// SERVING, "down" NOT_SERVING.
func grpcServer(t *testing.T, creds credentials.TransportCredentials) string {
	t.Helper()
	var opts []grpc.ServerOption
	if creds != nil {
		opts = append(opts, grpc.Creds(creds))
	}
	gs := grpc.NewServer(opts...)
	hs := grpchealth.NewServer()
	hs.SetServingStatus("app", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	healthpb.RegisterHealthServer(gs, hs)
	ln := testutil.Listen(t)
	go gs.Serve(ln)
	t.Cleanup(gs.Stop)
	return ln.Addr().String()
}

func TestGRPC(t *testing.T) {
	server := newPKI(t, "server-ca")
	serverCert, _, _ := server.issue(t, "localhost", x509.ExtKeyUsageServerAuth)
	clients := newPKI(t, "client-ca")
	_, clientCert, clientKey := clients.issue(t, "client", x509.ExtKeyUsageClientAuth)
	other := newPKI(t, "other-ca")

	plain := grpcServer(t, nil)
	tlsAddr := grpcServer(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}}))
	mtls := grpcServer(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert},
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: clients.Pool}))
	nothing := testutil.RefusedAddr(t)

	tests := []struct {
		name string
		args []string
		code int
		want string // in stderr
	}{
		{"serving", []string{plain}, 0, ""},
		{"serving, named service", []string{plain, "--service", "app"}, 0, ""},
		{"not serving", []string{plain, "--service", "down"}, 1, "NOT_SERVING"},
		{"unknown service", []string{plain, "--service", "nope"}, 1, "SERVICE_UNKNOWN"},
		{"nothing listening", []string{nothing}, 1, "refused"},
		{"TLS, the right CA", []string{tlsAddr, "--tls", "--tls-ca-cert", server.caFile()}, 0, ""},
		{"TLS, the right CA, by name", []string{tlsAddr, "--tls", "--tls-ca-cert", server.caFile(), "--tls-server-name", "localhost"}, 0, ""},
		{"TLS, a wrong name", []string{tlsAddr, "--tls", "--tls-ca-cert", server.caFile(), "--tls-server-name", "example.com"}, 1, "TLS"},
		{"TLS, a wrong CA", []string{tlsAddr, "--tls", "--tls-ca-cert", other.caFile()}, 1, "TLS"},
		{"TLS, the system's CAs", []string{tlsAddr, "--tls"}, 1, "TLS"},
		{"TLS, no verify", []string{tlsAddr, "--tls", "--tls-no-verify"}, 0, ""},
		{"TLS to a plain server", []string{plain, "--tls", "--tls-no-verify"}, 1, "TLS"},
		{"plain to a TLS server", []string{tlsAddr}, 1, ""},
		{"mTLS with a client certificate", []string{mtls, "--tls", "--tls-ca-cert", server.caFile(), "--tls-client-cert", clientCert, "--tls-client-key", clientKey}, 0, ""},
		{"mTLS without a client certificate", []string{mtls, "--tls", "--tls-ca-cert", server.caFile()}, 1, "tls"},
		{"grpc-health-probe's flags", []string{"-addr=" + tlsAddr, "-service=app", "-connect-timeout=1s", "-rpc-timeout=1s",
			"-tls", "-tls-ca-cert=" + server.caFile(), "-tls-server-name=localhost", "-v"}, 0, ""},
		{"grpc-health-probe's flags, mTLS", []string{"-addr", mtls, "-tls", "-tls-ca-cert", server.caFile(),
			"-tls-client-cert", clientCert, "-tls-client-key", clientKey}, 0, ""},
		{"usage: no address", nil, 2, "HOST:PORT"},
		{"usage: two addresses", []string{plain, plain}, 2, "HOST:PORT"},
		{"usage: TLS flag without --tls", []string{plain, "--tls-ca-cert", server.caFile()}, 2, "without --tls"},
		{"usage: unreadable CA", []string{plain, "--tls", "--tls-ca-cert", "/nonexistent"}, 2, "--tls-ca-cert"},
		{"usage: key without certificate", []string{plain, "--tls", "--tls-client-key", clientKey}, 2, "go together"},
		{"usage: ALTS", []string{plain, "-alts"}, 2, "not supported"},
		{"usage: bad timeout", []string{plain, "--timeout", "-1s"}, 2, "--timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr, took := probe(t, append([]string{"grpc"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("probe grpc %q: exit %d %q, want %d and %q", tt.args, code, stderr, tt.code, tt.want)
			}
			if n := strings.Count(stderr, "\n"); code != 0 && n != 1 {
				t.Fatalf("stderr has %d lines, want one: %q", n, stderr)
			}
			if took > 2*time.Second {
				t.Fatalf("took %s", took)
			}
		})
	}
}

// probe, which links no TLS, checks plaintext gRPC and HTTP as probe-tls
// does, and a check that asks for TLS is a usage error naming probe-tls.
func TestProbeWithoutTLS(t *testing.T) {
	server := newPKI(t, "server-ca")
	serverCert, _, _ := server.issue(t, "localhost", x509.ExtKeyUsageServerAuth)
	plain := grpcServer(t, nil)
	tlsAddr := grpcServer(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}}))
	web := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(web.Close)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"grpc, plaintext", []string{"grpc", plain, "--service", "app"}, 0, ""},
		{"grpc, not serving", []string{"grpc", plain, "--service", "down"}, 1, "NOT_SERVING"},
		{"grpc --tls", []string{"grpc", tlsAddr, "--tls", "--tls-ca-cert", server.caFile()}, 2, "use probe-tls"},
		{"grpc-health-probe's -tls", []string{"grpc", "-addr", tlsAddr, "-tls", "-tls-no-verify"}, 2, "use probe-tls"},
		{"http, plaintext", []string{"http", web.URL + "/"}, 1, "status 404"},
		{"http, https://", []string{"http", "https://" + tlsAddr + "/"}, 2, "use probe-tls"},
		{"a TLS flag without --tls", []string{"grpc", plain, "--tls-no-verify"}, 2, "without --tls"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr, _ := run(t, plainProbeBin, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("probe %q: exit %d %q, want %d and %q", tt.args, code, stderr, tt.code, tt.want)
			}
		})
	}
	// Control: probe-tls runs the check probe refuses.
	if code, stderr, _ := probe(t, "grpc", tlsAddr, "--tls", "--tls-ca-cert", server.caFile()); code != 0 {
		t.Fatalf("probe-tls grpc --tls: exit %d %q", code, stderr)
	}
}

// Servers that are not gRPC, or are broken, or hostile: the probe exits 1
// within its --timeout, never hangs, never panics.
func TestGRPCHostileServers(t *testing.T) {
	const timeout = 500 * time.Millisecond
	raw := testutil.Serve
	// readRequest reads the client preface and frames until the call's
	// DATA frame (END_STREAM on stream 1).
	readRequest := func(c net.Conn) bool {
		preface := make([]byte, 24)
		if _, err := io.ReadFull(c, preface); err != nil {
			return false
		}
		for {
			var h [9]byte
			if _, err := io.ReadFull(c, h[:]); err != nil {
				return false
			}
			n := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
			if _, err := io.CopyN(io.Discard, c, int64(n)); err != nil {
				return false
			}
			if h[3] == 0 && h[4]&1 != 0 {
				return true
			}
		}
	}
	frame := func(typ, flags byte, stream uint32, p []byte) []byte {
		h := []byte{byte(len(p) >> 16), byte(len(p) >> 8), byte(len(p)), typ, flags, byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
		return append(h, p...)
	}
	// :status 200, content-type application/grpc, as literal fields.
	okHeaders := []byte{0x88, 0x00, 0x0c}
	okHeaders = append(okHeaders, "content-type"...)
	okHeaders = append(okHeaders, 0x10)
	okHeaders = append(okHeaders, "application/grpc"...)

	hold := make(chan struct{}) // a server that holds its connection to the test's end
	t.Cleanup(func() { close(hold) })
	http1 := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello\n") }))
	t.Cleanup(http1.Close)
	tests := []struct {
		name string
		addr string
		want string
	}{
		{"never answers", raw(t, func(c net.Conn) { io.Copy(io.Discard, c) }), "deadline"},
		{"accepts, says nothing, never reads", raw(t, func(c net.Conn) { <-hold }), "deadline"},
		{"closes mid-frame", raw(t, func(c net.Conn) {
			if readRequest(c) {
				c.Write(frame(4, 0, 0, nil)[:5]) // half a frame header
			}
		}), "closed"},
		{"closes mid-headers", raw(t, func(c net.Conn) {
			if readRequest(c) {
				c.Write(frame(4, 0, 0, nil))
				c.Write(frame(1, 4, 1, okHeaders)[:12])
			}
		}), "closed"},
		{"oversized message", raw(t, func(c net.Conn) {
			if readRequest(c) {
				c.Write(frame(4, 0, 0, nil))
				c.Write(frame(1, 4, 1, okHeaders))
				c.Write(frame(0, 0, 1, []byte{0, 0x40, 0, 0, 0})) // a 1 GiB message follows
				io.Copy(io.Discard, c)
			}
		}), "oversized"},
		{"a huge frame", raw(t, func(c net.Conn) {
			if readRequest(c) {
				c.Write([]byte{0xff, 0xff, 0xff, 0, 0, 0, 0, 0, 1})
				io.Copy(io.Discard, c)
			}
		}), "not HTTP/2"},
		{"garbage", raw(t, func(c net.Conn) { c.Write(bytes.Repeat([]byte("garbage\n"), 100)); io.Copy(io.Discard, c) }), "HTTP/2"},
		{"an HTTP/1 server", strings.TrimPrefix(http1.URL, "http://"), "HTTP/2"},
		{"a reset", raw(t, func(c net.Conn) {
			if readRequest(c) {
				c.Write(frame(4, 0, 0, nil))
				c.Write(frame(3, 0, 1, []byte{0, 0, 0, 2}))
			}
		}), "RST_STREAM"},
		// Small HEADERS frames, each naming a 3 KB dynamic-table entry a
		// hundred times: 300 KB decoded per 100 bytes read (the probe
		// grew to 1.17 GB within --timeout before the bound).
		{"a header-block flood", raw(t, func(c net.Conn) {
			if readRequest(c) {
				c.Write(frame(4, 0, 0, nil))
				big := append([]byte{0x40, 0x05}, "x-big"...)
				big = append(big, hpackLen(3000)...) // a 3,000-byte value
				big = append(big, bytes.Repeat([]byte("v"), 3000)...)
				c.Write(frame(1, 4, 1, append(append([]byte(nil), okHeaders...), big...)))
				refs := bytes.Repeat([]byte{0x80 | 62}, 100) // the entry just added
				for range 100000 {
					if _, err := c.Write(frame(1, 4, 1, refs)); err != nil {
						return
					}
				}
			}
		}), "too large"},
		{"headers, no grpc-status", raw(t, func(c net.Conn) {
			if readRequest(c) {
				c.Write(frame(4, 0, 0, nil))
				c.Write(frame(1, 5, 1, okHeaders))
				io.Copy(io.Discard, c)
			}
		}), "no grpc-status"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr, took := probe(t, "grpc", tt.addr, "--timeout", timeout.String())
			if code != 1 || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
				t.Fatalf("exit %d %q, want 1 and one line with %q", code, stderr, tt.want)
			}
			if took > timeout+time.Second/2 {
				t.Fatalf("took %s with --timeout %s", took, timeout)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine") {
				t.Fatalf("panicked: %s", stderr)
			}
		})
	}
}

// The probe ends its connection without making the server log anything
// above info, nor a reset (grpc-go logs "Closing: connection reset by
// peer" at info when a client hangs up abruptly; grpc-health-probe #34): a
// clean close, GOAWAY then FIN after the server's answer. The control, a
// client that resets its connection, is caught by the same check.
func TestGRPCCleanClose(t *testing.T) {
	server := newPKI(t, "server-ca")
	serverCert, _, _ := server.issue(t, "localhost", x509.ExtKeyUsageServerAuth)
	plain := grpcServer(t, nil)
	tlsAddr := grpcServer(t, credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{serverCert}}))
	unclean := func(logged string) string {
		for _, line := range strings.Split(logged, "\n") {
			if strings.Contains(line, "WARNING") || strings.Contains(line, "ERROR") ||
				strings.Contains(line, "reset by peer") || strings.Contains(line, "broken pipe") {
				return line
			}
		}
		return ""
	}
	// since waits for the server to log the closes of n connections (the
	// barrier: what it logs of a connection comes before its close) and
	// returns what it logged after offset.
	since := func(offset, n int) string {
		t.Helper()
		testutil.WaitFor(t, fmt.Sprintf("the server to log %d connections closed", n), func() bool {
			return strings.Count(serverLog.String()[offset:], "Closing:") >= n
		})
		return serverLog.String()[offset:]
	}

	before := len(serverLog.String())
	for range 20 {
		for _, args := range [][]string{{"grpc", plain}, {"grpc", plain, "--service", "down"}, {"grpc", tlsAddr, "--tls", "--tls-ca-cert", server.caFile()}} {
			probe(t, args...)
		}
	}
	if line := unclean(since(before, 60)); line != "" {
		t.Fatalf("the server logged, after 60 probes: %s", line)
	}

	before = len(serverLog.String())
	c, err := net.Dial("tcp", plain)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	// Read what the server sends up to its ACK of our SETTINGS: then it
	// has nothing more to write and waits in a read, which the reset
	// fails. (Reset while it still writes, and its writer may take the
	// error, leaving its reader a plain EOF: a clean-looking close.)
	c.SetReadDeadline(time.Now().Add(testutil.Patience))
	for {
		var h [9]byte
		if _, err := io.ReadFull(c, h[:]); err != nil {
			t.Fatalf("the server's frames: %v", err)
		}
		if _, err := io.CopyN(io.Discard, c, int64(h[0])<<16|int64(h[1])<<8|int64(h[2])); err != nil {
			t.Fatalf("the server's frames: %v", err)
		}
		if h[3] == 0x4 && h[4]&0x1 != 0 { // SETTINGS with ACK
			break
		}
	}
	c.(*net.TCPConn).SetLinger(0)
	c.Close()
	// The same check must see it: a clean line from a probe above may
	// still land first, so wait for the unclean one, not for any line.
	testutil.WaitFor(t, "control: the abrupt client's reset logged (else the check cannot fail)", func() bool {
		return unclean(serverLog.String()[before:]) != ""
	})
}

// probe http over https: verified against a CA, --tls-no-verify as the
// kubelet's HTTPS probe, and a clean close (net/http logs nothing).
func TestHTTPS(t *testing.T) {
	var logs testutil.Buffer
	// Connections the server has taken and ended: what it logs of one
	// comes before its end, so "all ended" is the barrier after which an
	// absence of log lines means something.
	var opened, closed atomic.Int64
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/fail" {
			w.WriteHeader(503)
		}
		io.WriteString(w, strings.Repeat("body\n", 1000))
	}))
	ts.Config.ErrorLog = log.New(&logs, "", 0)
	ts.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		switch st {
		case http.StateNew:
			opened.Add(1)
		case http.StateClosed:
			closed.Add(1)
		}
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := harness.WriteCertPEM(caFile, ts.Certificate().Raw); err != nil {
		t.Fatal(err)
	}
	other := newPKI(t, "other")
	plainServer := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(plainServer.Close)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"verified", []string{ts.URL + "/ok", "--tls-ca-cert", caFile}, 0, ""},
		{"status 503", []string{ts.URL + "/fail", "--tls-ca-cert", caFile}, 1, "status 503"},
		{"no verify, as the kubelet", []string{ts.URL + "/ok", "--tls-no-verify"}, 0, ""},
		{"unknown authority", []string{ts.URL + "/ok"}, 1, "TLS"},
		{"wrong CA", []string{ts.URL + "/ok", "--tls-ca-cert", other.caFile()}, 1, "TLS"},
		{"https to a plain server", []string{"https://" + strings.TrimPrefix(plainServer.URL, "http://") + "/", "--tls-no-verify"}, 1, "TLS"},
		{"usage: --tls with http://", []string{"http://127.0.0.1:1/", "--tls"}, 2, "https://"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, stderr, _ := probe(t, append([]string{"http"}, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("probe http %q: exit %d %q, want %d and %q", tt.args, code, stderr, tt.code, tt.want)
			}
		})
	}
	// A clean close: 20 verified probes make net/http log nothing (the
	// failing cases above may have).
	allEnded := func() bool { return closed.Load() == opened.Load() }
	testutil.WaitFor(t, "the cases' connections to end", allEnded)
	before, closedBefore := len(logs.String()), closed.Load()
	for range 20 {
		if code, stderr, _ := probe(t, "http", ts.URL+"/ok", "--tls-ca-cert", caFile); code != 0 {
			t.Fatalf("exit %d %q", code, stderr)
		}
	}
	testutil.WaitFor(t, "the server to end the 20 probes' connections", func() bool { return closed.Load()-closedBefore >= 20 && allEnded() })
	if after := logs.String()[before:]; after != "" {
		t.Fatalf("net/http logged after clean probes:\n%s", after)
	}
	// Control: a client that hangs up in the TLS handshake is logged.
	before = len(logs.String())
	c, err := net.Dial("tcp", strings.TrimPrefix(ts.URL, "https://"))
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	testutil.WaitFor(t, "control: the abrupt client logged (else the check cannot fail)", func() bool { return len(logs.String()) > before })
}

// hpackLen encodes a string literal's length (no Huffman) as RFC 7541's
// 7-bit prefix integer.
func hpackLen(n int) []byte {
	if n < 127 {
		return []byte{byte(n)}
	}
	out := []byte{0x7f}
	n -= 127
	for n >= 128 {
		out = append(out, byte(n%128)|0x80)
		n /= 128
	}
	return append(out, byte(n))
}
