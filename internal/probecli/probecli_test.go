package probecli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drainwell/drainwell/internal/hpack"
	"github.com/drainwell/drainwell/internal/marker"
	"github.com/drainwell/drainwell/internal/testutil"
)

func env(vars map[string]string) Env {
	return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
}

// The probe and, for run, its child share one output buffer.
func runProbe(t *testing.T, e Env, args ...string) (int, string) {
	t.Helper()
	var out testutil.Buffer
	code := Main(context.Background(), nil, args, e, &out, &out)
	return code, out.String()
}

func TestHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("/fail", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	mux.HandleFunc("/unavailable", func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) })
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/loop", http.StatusFound) })
	mux.HandleFunc("/huge", func(w http.ResponseWriter, r *http.Request) {
		chunk := bytes.Repeat([]byte("x"), 1<<20)
		for range 64 { // 64 MiB unless the client hangs up
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	})
	block := make(chan struct{})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(block) })
	// A server that accepts and never answers (until the test ends).
	muteAddr := testutil.Serve(t, func(net.Conn) { <-block })
	closedAddr := testutil.RefusedAddr(t)
	// Servers that answer with raw bytes, then close.
	raw := func(answer string) string {
		return "http://" + testutil.Serve(t, func(c net.Conn) {
			br := bufio.NewReader(c)
			for { // the request's head
				l, err := br.ReadString('\n')
				if err != nil || l == "\r\n" {
					break
				}
			}
			io.WriteString(c, answer)
		}) + "/"
	}

	tests := []struct {
		name    string
		args    []string
		want    int
		wantOut string
	}{
		{"200", []string{srv.URL + "/ok"}, 0, ""},
		{"500", []string{srv.URL + "/fail"}, 1, "status 500"},
		{"503", []string{srv.URL + "/unavailable"}, 1, "status 503"},
		{"redirect loop is a 3xx", []string{srv.URL + "/loop"}, 0, ""},
		{"huge body", []string{srv.URL + "/huge"}, 0, ""},
		{"slow", []string{"--timeout=100ms", srv.URL + "/slow"}, 1, "no response within 100ms"},
		{"never answers", []string{"--timeout=100ms", "http://" + muteAddr + "/"}, 1, "no response"},
		{"refused", []string{"http://" + closedAddr + "/"}, 1, "refused"},
		{"ftp", []string{"ftp://127.0.0.1/"}, 2, "want http[s]://"},
		{"flags after the URL", []string{srv.URL + "/ok", "--timeout", "2s"}, 0, ""},
		{"no URL", nil, 2, "want one URL"},
		{"not a URL", []string{"::"}, 2, ""},
		{"bad timeout", []string{"--timeout=0", srv.URL}, 2, "must be positive"},
		// As the kubelet's net/http client: interim responses skipped,
		// a head that never ends is no answer.
		{"103 Early Hints, then 200", []string{raw("HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")}, 0, ""},
		{"100 Continue, then 500", []string{raw("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n")}, 1, "status 500"},
		{"a bare status line", []string{raw("HTTP/1.1 200 OK\r\n")}, 1, "incomplete response headers"},
		{"headers without their end", []string{raw("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n")}, 1, "incomplete response headers"},
		{"a huge head", []string{raw("HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", 70<<10) + "\r\n\r\n")}, 1, "incomplete response headers"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := time.Now()
			code, out := runProbe(t, env(nil), append([]string{"http"}, tt.args...)...)
			if code != tt.want || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("exit %d %q; want %d %q", code, out, tt.want, tt.wantOut)
			}
			if took := time.Since(start); took > 5*time.Second {
				t.Fatalf("took %s", took)
			}
		})
	}
}

func TestStatusCode(t *testing.T) {
	tests := []struct {
		line string
		want int
		ok   bool
	}{
		{"HTTP/1.1 200 OK\r\n", 200, true},
		{"HTTP/1.0 404\r\n", 404, true},
		{"SSH-2.0-OpenSSH\r\n", 0, false},
		{"HTTP/1.1 2000 OK\r\n", 0, false},
		{"HTTP/1.1 abc\r\n", 0, false},
	}
	for _, tt := range tests {
		got, err := statusCode(tt.line)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("statusCode(%q) = %d, %v", tt.line, got, err)
		}
	}
}

func TestTCPAndSleep(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := l.Addr().String()
	closedAddr := testutil.RefusedAddr(t)
	defer l.Close()
	tests := []struct {
		args []string
		want int
	}{
		{[]string{"tcp", open}, 0},
		{[]string{"tcp", closedAddr}, 1},
		{[]string{"tcp", "nonsense"}, 2},
		{[]string{"tcp"}, 2},
		{[]string{"sleep", "1ms"}, 0},
		{[]string{"sleep", "soon"}, 2},
		{[]string{"sleep", "-1s"}, 2}, // a negative duration, not an unknown flag
		{[]string{"frobnicate"}, 2},
		{nil, 2},
		// Usage errors, not failed checks (they exited 1):
		{[]string{"tcp", "127.0.0.1:70000"}, 2},
		{[]string{"tcp", "127.0.0.1:0"}, 2},
		{[]string{"grpc", "127.0.0.1:99999"}, 2},
		{[]string{"http", "http://127.0.0.1:99999/"}, 2},
		{[]string{"tcp", "--timeout", "87600h", open}, 2}, // a probe that could hang for years
		{[]string{"grpc", "--rpc-timeout", "2h", open}, 2},
		{[]string{"tcp", "--timeout"}, 2},
		{[]string{"--version"}, 0},
	}
	for _, tt := range tests {
		if code, out := runProbe(t, env(nil), tt.args...); code != tt.want {
			t.Errorf("probe %v: exit %d %q, want %d", tt.args, code, out, tt.want)
		}
	}
	// A flag with its value missing says so (it said: invalid value "--").
	if _, out := runProbe(t, env(nil), "live", "--max-age"); !strings.Contains(out, "flag needs an argument: --max-age") {
		t.Errorf("probe live --max-age: %q", out)
	}
}

// probe-tls names itself in its messages (it said "probe").
func TestProbeTLSNamesItself(t *testing.T) {
	var out strings.Builder
	noTLS := func(TLSOptions, string, ...string) (Handshake, error) { return nil, errors.New("no TLS here") }
	code := Main(context.Background(), noTLS, []string{"tcp", "x"}, env(nil), &out, &out)
	if code != 2 || !strings.HasPrefix(out.String(), "probe-tls tcp: ") {
		t.Fatalf("exit %d %q, want 2 and a message from probe-tls", code, out.String())
	}
}

func TestLive(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "live")
	if err := (&marker.Marker{Path: fresh}).Create(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale")
	os.WriteFile(stale, nil, 0o644)
	old := time.Now().Add(-47 * time.Second)
	os.Chtimes(stale, old, old)
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    int
		wantOut string
	}{
		{"fresh", map[string]string{"LIVE_FILE": fresh}, nil, 0, ""},
		{"flag", nil, []string{"--file", fresh}, 0, ""},
		{"missing", map[string]string{"LIVE_FILE": filepath.Join(dir, "none")}, nil, 1, "marker missing"},
		{"stale", map[string]string{"LIVE_FILE": stale}, nil, 1, "stale for 47s"},
		{"existence only", map[string]string{"LIVE_FILE": stale, "LIVE_MAX_AGE": "0"}, nil, 0, ""},
		{"bad env", map[string]string{"LIVE_FILE": fresh, "LIVE_MAX_AGE": "x"}, nil, 2, "LIVE_MAX_AGE"},
		{"bad env overridden", map[string]string{"LIVE_FILE": fresh, "LIVE_MAX_AGE": "x"}, []string{"--max-age=1m"}, 0, ""},
		{"stray argument", map[string]string{"LIVE_FILE": fresh}, []string{"extra"}, 2, "no arguments"},
		{"unknown flag", nil, []string{"--nope"}, 2, "nope"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runProbe(t, env(tt.env), append([]string{"live"}, tt.args...)...)
			if code != tt.want || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("exit %d %q; want %d %q", code, out, tt.want, tt.wantOut)
			}
		})
	}
}

func TestRunExitsWithChildStatusAndRemovesMarker(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	seen := filepath.Join(dir, "seen")
	// The child records whether the marker existed while it ran.
	code, out := runProbe(t, env(nil), "run", "--file", live, "--",
		"/bin/sh", "-c", "test -f "+live+" && touch "+seen+"; exit 3")
	if code != 3 {
		t.Fatalf("exit %d %q, want the child's 3", code, out)
	}
	if _, err := os.Stat(seen); err != nil {
		t.Fatal("marker did not exist while the child ran")
	}
	if _, err := os.Lstat(live); err == nil {
		t.Fatal("marker left after the child exited")
	}
}

// Each of run's own endings has its code; the child's pass through.
func TestRunExitCodes(t *testing.T) {
	dir := t.TempDir()
	live := filepath.Join(dir, "live")
	notExec := filepath.Join(dir, "data")
	if err := os.WriteFile(notExec, []byte("not a program"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		args []string
		want int
	}{
		{"the child's clean exit", []string{"--", "/bin/sh", "-c", "exit 0"}, 0},
		{"the child's deadline code passes through", []string{"--", "/bin/sh", "-c", "exit 4"}, 4},
		{"the child killed by SIGTERM", []string{"--", "/bin/sh", "-c", "kill -TERM $$"}, 128 + 15},
		{"no command", nil, 2},
		{"not found", []string{"--", filepath.Join(dir, "nonexistent")}, 127},
		{"not found on PATH", []string{"--", "no-such-program-here"}, 127},
		{"not executable", []string{"--", notExec}, 126},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runProbe(t, env(nil), append([]string{"run", "--file", live}, tt.args...)...)
			if code != tt.want {
				t.Fatalf("exit %d %q, want %d", code, out, tt.want)
			}
			if _, err := os.Lstat(live); err == nil {
				t.Fatal("marker left behind")
			}
		})
	}
}

func TestRunning(t *testing.T) {
	if !running(os.Getpid()) {
		t.Fatal("this process is not running")
	}
	if running(1 << 30) {
		t.Fatal("a nonexistent pid is running")
	}
}

// A server's grpc-message reaches stderr as one printable line of bounded
// length: no escape sequences, no newlines (it came raw, 15 KB on a line).
func TestGRPCMessagePrintable(t *testing.T) {
	msg := "\x1b[31mred\x1b[0m\nsecond line\r" + strings.Repeat("x", 15000)
	_, err := answer([]hpack.Field{{Name: "grpc-status", Value: "13"}, {Name: "grpc-message", Value: msg}}, nil)
	if err == nil {
		t.Fatal("a failed call passed")
	}
	got := err.Error()
	if strings.ContainsAny(got, "\x1b\n\r") || len(got) > 300 || !strings.Contains(got, "[31mred") {
		t.Fatalf("error %q (%d bytes): want one printable line under 300 bytes", got, len(got))
	}
}
