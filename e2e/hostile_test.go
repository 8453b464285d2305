package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/drainwell/drainwell/cmd/app/service"
	"github.com/drainwell/drainwell/internal/testutil"
)

// Request smuggling shapes against the app: each request to POST /count
// (405) carries a POST /incr after or inside its body. What net/http
// answers is the table: a 200 means the hidden /incr ran. Rejected shapes
// run nothing; "405,200" means net/http read the bytes as two requests,
// as RFC 9112 reads them (the control: a plain pipelined pair). The one
// desync left is Transfer-Encoding beside Content-Length: net/http goes
// by Transfer-Encoding, as RFC 9112 says, but keeps the connection open
// (the RFC says close), so behind a proxy that goes by Content-Length the
// hidden request would run; net/http deletes Content-Length before any
// handler sees it (RELIABILITY.md, "Hostile clients").
func TestSmugglingShapes(t *testing.T) {
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "LIVE_FILE="+filepath.Join(t.TempDir(), "live"), "WORK_DELAY=0s")
	const hidden = "POST /incr HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
	const front = "POST /count HTTP/1.1\r\nHost: x\r\n"
	tests := []struct {
		name, raw, want string
	}{
		{"control: a pipelined pair", front + "Content-Length: 0\r\n\r\n" + hidden, "405,200"},
		{"CL.TE", front + "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, "405,200"},
		{"TE.CL (the desync left)", front + "Transfer-Encoding: chunked\r\nContent-Length: 60\r\n\r\n0\r\n\r\n" + hidden, "405,200"},
		{"TE with a tab, and CL", front + "Transfer-Encoding:\tchunked\r\nContent-Length: 55\r\n\r\n0\r\n\r\n" + hidden, "405,200"},
		{"two different Content-Lengths", front + "Content-Length: 0\r\nContent-Length: 55\r\n\r\n" + hidden, "400"},
		{"two equal Content-Lengths", front + "Content-Length: 0\r\nContent-Length: 0\r\n\r\n" + hidden, "405,200"},
		{"a Content-Length list", front + "Content-Length: 0, 55\r\n\r\n" + hidden, "400"},
		{"Content-Length +0", front + "Content-Length: +0\r\n\r\n" + hidden, "400"},
		{"Content-Length -1", front + "Content-Length: -1\r\n\r\n" + hidden, "400"},
		{"Content-Length 0x0", front + "Content-Length: 0x0\r\n\r\n" + hidden, "400"},
		{"Transfer-Encoding xchunked", front + "Transfer-Encoding: xchunked\r\n\r\n" + hidden, "501"},
		{"space before the colon", front + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n" + hidden, "400"},
		{"chunked, identity", front + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + hidden, "501"},
		{"identity, chunked", front + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + hidden, "501"},
		{"two Transfer-Encodings", front + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + hidden, "501"},
		{"obs-fold Transfer-Encoding", front + "Transfer-Encoding: identity\r\n chunked\r\n\r\n0\r\n\r\n" + hidden, "501"},
		{"chunk size overflow", front + "Transfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n" + hidden, "405"},
		{"chunk line ended by LF", front + "Transfer-Encoding: chunked\r\n\r\n0\n\n" + hidden, "405"},
		{"quoted CRLF in a chunk extension", front + "Transfer-Encoding: chunked\r\n\r\n0;x=\"\r\n\"\r\n\r\n" + hidden, "405"},
		{"a trailer claiming a Content-Length", front + "Transfer-Encoding: chunked\r\n\r\n0\r\nContent-Length: 55\r\n\r\n" + hidden, "405,200"},
		{"HTTP/1.0 chunked", "POST /count HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + hidden, "405"},
		{"bare LF line ends", "POST /count HTTP/1.1\nHost: x\nContent-Length: 0\n\n" + hidden, "405,200"},
		{"bare CR", "POST /count HTTP/1.1\rHost: x\r\nContent-Length: 0\r\n\r\n" + hidden, "400"},
		{"NUL in a header", front + "X: a\x00b\r\nContent-Length: 0\r\n\r\n" + hidden, "400"},
		{"no Host", "POST /count HTTP/1.1\r\nContent-Length: 0\r\n\r\n" + hidden, "400"},
		{"two Hosts", front + "Host: y\r\nContent-Length: 0\r\n\r\n" + hidden, "400"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", p.Addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(testutil.Patience))
			io.WriteString(c, tt.raw)
			c.(*net.TCPConn).CloseWrite() // the server answers what it parsed, then sees the end
			br := bufio.NewReader(c)
			var codes []string
			for {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					break // closed by the server
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes = append(codes, fmt.Sprint(resp.StatusCode))
			}
			if got := strings.Join(codes, ","); got != tt.want {
				t.Fatalf("answers %q, want %q", got, tt.want)
			}
		})
	}
}

// Requests pipelined on one connection: before the signal every one is
// answered; during the drain the first answer carries Connection: close and
// the rest are neither answered nor run. Either way the counter holds
// exactly the answered increments (13,183 = 13,183 when it was found).
func TestPipeliningThroughADrain(t *testing.T) {
	r := startRedis(t)
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "REDIS_ADDR="+r.Addr, "LIVE_FILE="+filepath.Join(t.TempDir(), "live"),
		"DRAIN_DELAY=2s", "WORK_DELAY=10ms", "SHUTDOWN_TIMEOUT=10s", "IDLE_CLOSE=100ms")
	pipeline := func() (answered int) {
		t.Helper()
		c := testutil.Dial(t, p.Addr)
		c.Conn().SetDeadline(time.Now().Add(testutil.Patience))
		io.WriteString(c.Conn(), strings.Repeat("POST /incr HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", 100))
		for range 100 {
			resp, err := http.ReadResponse(c.Reader(), nil)
			if err != nil {
				return answered
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				answered++
			}
			if resp.Close {
				return answered
			}
		}
		return answered
	}
	before := pipeline()
	if before != 100 {
		t.Fatalf("before the signal: %d of 100 pipelined requests answered", before)
	}
	p.Signal(syscall.SIGTERM)
	waitDraining(t, "http://"+p.Addr)
	during := pipeline()
	if during < 1 {
		t.Fatal("during the drain: no pipelined request answered")
	}
	if code, err := p.Wait(testutil.Patience); err != nil || code != 0 {
		t.Fatalf("exit %d %v, want 0", code, err)
	}
	if n, err := r.Count(context.Background()); err != nil || n != int64(before+during) {
		t.Fatalf("counter %d %v, answered %d + %d", n, err, before, during)
	}
	t.Logf("pipelined: 100 answered before the signal, %d of 100 during the drain; counter %d", during, before+during)
}

// h2Client is a raw HTTP/2 client connection to a gRPC server.
type h2Client struct {
	c  net.Conn
	fr *http2.Framer
}

func dialH2(t *testing.T, addr string, settings ...http2.Setting) *h2Client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(testutil.Patience))
	io.WriteString(c, http2.ClientPreface)
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	return &h2Client{c: c, fr: fr}
}

// head is the HPACK block of a gRPC request to path.
func grpcHead(path string) []byte {
	var b bytes.Buffer
	enc := hpack.NewEncoder(&b)
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", path},
		{":authority", "x"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	return b.Bytes()
}

// untilEnd reads frames until the server ends stream id (RST_STREAM, or
// trailers) or the connection (GOAWAY, EOF) and says which, with the
// trailers' grpc-status.
func (h *h2Client) untilEnd(id uint32) string {
	h.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return "connection closed"
		}
		switch f := f.(type) {
		case *http2.GoAwayFrame:
			return "GOAWAY " + f.ErrCode.String()
		case *http2.RSTStreamFrame:
			if f.StreamID == id {
				return "RST_STREAM " + f.ErrCode.String()
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id && f.StreamEnded() {
				for _, hf := range f.RegularFields() {
					if hf.Name == "grpc-status" {
						return "grpc-status " + hf.Value
					}
				}
			}
		}
	}
}

// Floods and huge messages on the gRPC port: a header block continued
// without end is cut by the connection (grpc-go's header list bound), a
// message that announces 200 MiB is refused from its length prefix
// (RESOURCE_EXHAUSTED, nothing buffered). The app serves on.
func TestGRPCFloodsAndHugeMessages(t *testing.T) {
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "GRPC_ADDR=127.0.0.1:0", "LIVE_FILE="+filepath.Join(t.TempDir(), "live"))
	tests := []struct {
		name   string
		attack func(h *h2Client)
		want   string // how the server ends it
	}{
		{"CONTINUATION flood", func(h *h2Client) {
			h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: grpcHead(service.GRPCGet)})
			junk := make([]byte, 16<<10)
			for range 64 << 10 { // 1 GiB unless the server ends it first
				if h.fr.WriteContinuation(1, false, junk) != nil {
					return
				}
			}
		}, "connection closed"},
		{"a 200 MiB message announced", func(h *h2Client) {
			h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: grpcHead(service.GRPCGet), EndHeaders: true})
			prefix := make([]byte, 5)
			binary.BigEndian.PutUint32(prefix[1:], 200<<20)
			h.fr.WriteData(1, false, append(prefix, make([]byte, 1000)...))
		}, "grpc-status 8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := dialH2(t, p.GRPCAddr)
			go tt.attack(h)
			if got := h.untilEnd(1); !strings.HasPrefix(got, tt.want) {
				t.Fatalf("the server ended it with %q, want %q", got, tt.want)
			}
			if st, err := grpcCheck(grpcConn(t, p.GRPCAddr), ""); err != nil || st != healthpb.HealthCheckResponse_SERVING {
				t.Fatalf("health after the attack: %v %v", st, err)
			}
		})
	}
}

// Every hostile client at once: a rapid-reset loop and a zero-window client
// on the gRPC port, bodies that never end on the HTTP port, ordinary
// increments over both, and Redis stalling every write from the signal.
// Stalled through the delay, the app exits 0 well within SHUTDOWN_TIMEOUT
// and the counter holds exactly the increments it answered (before: the
// bodies and the zero window each held the drain to the deadline, exit
// 4). Stalled past the deadline, it exits 4 at SHUTDOWN_TIMEOUT, and every
// answered increment is counted once or reported abandoned.
func TestHostileClientsTogether(t *testing.T) {
	tests := []struct {
		name     string
		pause    time.Duration // Redis stalls every write this long from the signal
		wantExit int
	}{
		{"Redis stalled through the delay", 3 * time.Second, 0},
		{"Redis stalled past the deadline", 30 * time.Second, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { testHostileClientsTogether(t, tt.pause, tt.wantExit) })
	}
}

func testHostileClientsTogether(t *testing.T, pause time.Duration, wantExit int) {
	r := startRedis(t)
	p := start(t, bins["app"], "ADDR=127.0.0.1:0", "GRPC_ADDR=127.0.0.1:0", "REDIS_ADDR="+r.Addr,
		"LIVE_FILE="+filepath.Join(t.TempDir(), "live"),
		"DRAIN_DELAY=1s", "WORK_DELAY=100ms", "SHUTDOWN_TIMEOUT=10s", "IDLE_CLOSE=200ms")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(stop)

	// Rapid reset: HEADERS and RST_STREAM pairs until the test ends.
	resets := dialH2(t, p.GRPCAddr)
	go io.Copy(io.Discard, resets.c)
	wg.Go(func() {
		head := grpcHead(service.GRPCGet)
		for id := uint32(1); id < 1<<30; id += 2 {
			select {
			case <-stop:
				return
			default:
			}
			if resets.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: head, EndHeaders: true}) != nil ||
				resets.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	})
	// A zero window: a health check whose answer can never be sent.
	zero := dialH2(t, p.GRPCAddr, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0})
	go io.Copy(io.Discard, zero.c)
	zero.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: grpcHead("/grpc.health.v1.Health/Check"), EndHeaders: true})
	zero.fr.WriteData(1, true, []byte{0, 0, 0, 0, 0})
	// Bodies that never end.
	for _, head := range []string{"Content-Length: 1000", "Content-Length: 10\r\nExpect: 100-continue"} {
		c, err := net.Dial("tcp", p.Addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /incr HTTP/1.1\r\nHost: x\r\n%s\r\n\r\nab", head)
		go io.Copy(io.Discard, c)
	}

	// Ordinary increments over HTTP and gRPC until the app stops taking
	// them.
	var answered atomic.Int64
	conn := grpcConn(t, p.GRPCAddr)
	incr := func(grpcToo bool) {
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			resp, err := http.Post("http://"+p.Addr+"/incr", "text/plain", strings.NewReader("x"))
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == 200 {
					answered.Add(1)
				}
			}
			if grpcToo {
				err := conn.Invoke(context.Background(), service.GRPCIncr, &emptypb.Empty{}, &emptypb.Empty{})
				if err == nil {
					answered.Add(1)
				}
			}
		}
	}
	wg.Go(func() { incr(true) })
	wg.Go(func() { incr(false) })
	testutil.WaitFor(t, "increments answered", func() bool { return answered.Load() >= 20 })
	// Redis stalls every write: the increments time out and retry, and
	// land once it answers again, or are abandoned at the deadline.
	if err := r.Client.Do(context.Background(), "CLIENT", "PAUSE", pause.Milliseconds(), "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	p.Signal(syscall.SIGTERM)
	code, err := p.Wait(testutil.Patience)
	took := time.Since(signalled)
	if err != nil || code != wantExit {
		t.Fatalf("exit %d %v after %s, want %d", code, err, took.Round(time.Millisecond), wantExit)
	}
	if took > 10*time.Second+time.Second { // the deadline, and the process's exit
		t.Fatalf("exited %s after SIGTERM, beyond SHUTDOWN_TIMEOUT", took.Round(time.Millisecond))
	}
	report := p.Stderr()[strings.LastIndex(p.Stderr(), `msg="drain report"`):]
	var abandoned int64
	fmt.Sscan(regexp.MustCompile(`tasks_abandoned=(\d+)`).FindStringSubmatch(report)[1], &abandoned)
	if err := r.Client.Do(context.Background(), "CLIENT", "UNPAUSE").Err(); err != nil {
		t.Fatal(err)
	}
	// Every answered increment counted once, or reported abandoned (an
	// abandoned one may still land: in doubt).
	var n int64
	testutil.WaitFor(t, "every answered increment counted or reported abandoned", func() bool {
		n, err = r.Count(context.Background())
		return err == nil && n <= answered.Load() && answered.Load()-n <= abandoned
	})
	if wantExit == 0 && n != answered.Load() {
		t.Fatalf("counter %d, answered %d", n, answered.Load())
	}
	cut := regexp.MustCompile(`conns_cut=\d+`).FindString(p.Stderr())
	t.Logf("exit %d %s after SIGTERM; answered %d, counter %d, abandoned %d; grpc %s; %s", code, took.Round(time.Millisecond),
		answered.Load(), n, abandoned, cut, strings.TrimSpace(report))
}
