package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/probe"
)

// A streaming response is told to finish by Draining, and the drain
// then ends cleanly.
func TestStreamingResponseFinishesWhenTold(t *testing.T) {
	inBubble(t, testStreamingResponseFinishesWhenTold)
}

func testStreamingResponseFinishesWhenTold(t *testing.T) {
	var h *harness
	h = newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for {
			io.WriteString(w, "tick\n")
			w.(http.Flusher).Flush()
			select {
			case <-h.srv.Draining():
				io.WriteString(w, "bye\n")
				return
			case <-time.After(5 * time.Millisecond):
			}
		}
	}), func(c *Config) { c.DrainDelay = -1 }).start()
	resp, err := h.client.Get(h.url + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if line, _ := br.ReadString('\n'); line != "tick\n" {
		t.Fatalf("first line %q", line)
	}
	h.sigs <- syscall.SIGTERM
	body, _ := io.ReadAll(br)
	if !strings.HasSuffix(string(body), "bye\n") {
		t.Fatalf("stream did not end with bye: %q", body)
	}
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// hijacker serves a hijacked connection. A cooperative one says goodbye
// when the drain begins and returns once release is closed.
func hijacker(h **harness, cooperative bool, release <-chan struct{}) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, rw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		rw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		if cooperative {
			<-(*h).srv.Draining()
			rw.WriteString("goodbye\n")
			rw.Flush()
			<-release
			return
		}
		io.Copy(io.Discard, c) // until the connection is closed under it
	})
}

func (h *harness) dialHijacked() *bufio.Reader {
	t := h.t
	t.Helper()
	c, err := h.net.Dial(context.Background(), "tcp", hostOf(h.url))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: test\r\nConnection: Upgrade\r\n\r\n")
	r := bufio.NewReader(c)
	resp, err := http.ReadResponse(r, nil)
	if err != nil || resp.StatusCode != 101 {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	return r
}

// A hijacked connection (a websocket) whose handler finishes when told is
// waited for, and the drain ends cleanly.
func TestHijackedConnectionFinishesWhenTold(t *testing.T) {
	inBubble(t, testHijackedConnectionFinishesWhenTold)
}

func testHijackedConnectionFinishesWhenTold(t *testing.T) {
	var h *harness
	release := make(chan struct{})
	h = newHarness(t, hijacker(&h, true, release), func(c *Config) { c.DrainDelay = -1 }).start()
	r := h.dialHijacked()
	h.signal()
	if line, _ := r.ReadString('\n'); line != "goodbye\n" {
		t.Fatalf("got %q, want goodbye", line)
	}
	// The drain is parked on the handler however long it runs (short of
	// the deadline).
	h.at(testExpire - time.Second)
	if h.returned() {
		t.Fatal("the drain ended while a hijacked connection's handler still ran")
	}
	close(release)
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// One that ignores the drain holds it until the deadline, where it is
// closed; the drain reports the timeout.
func TestHijackedConnectionClosedAtDeadline(t *testing.T) {
	inBubble(t, testHijackedConnectionClosedAtDeadline)
}

func testHijackedConnectionClosedAtDeadline(t *testing.T) {
	var h *harness
	h = newHarness(t, hijacker(&h, false, nil), func(c *Config) { c.DrainDelay = -1 }).start()
	r := h.dialHijacked()
	h.signal()
	h.at(testExpire - time.Nanosecond)
	if step := h.srv.main.step.Load(); step == nil || *step != "long-lived handlers" || h.returned() {
		t.Fatalf("just before the deadline: step %v, returned %v; want the drain waiting for the hijacked handler", step, h.returned())
	}
	h.advance(time.Nanosecond)
	err := h.wait()
	if !errors.Is(err, ErrShutdownTimeout) || !strings.Contains(err.Error(), "long-lived handlers") {
		t.Fatalf("Serve = %v, want a timeout in the long-lived handlers phase", err)
	}
	if _, err := r.ReadByte(); err == nil {
		t.Fatal("hijacked connection still open after the deadline")
	}
}

// A client that never reads its (large) response does not hold the drain
// past the deadline.
func TestClientThatNeverReadsIsCutAtDeadline(t *testing.T) {
	inBubble(t, testClientThatNeverReadsIsCutAtDeadline)
}

func testClientThatNeverReadsIsCutAtDeadline(t *testing.T) {
	big := strings.Repeat("x", 1<<20)
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for range 64 {
			if _, err := io.WriteString(w, big); err != nil {
				return
			}
		}
	}), func(c *Config) { c.DrainDelay = -1 }).start()
	c, err := h.net.Dial(context.Background(), "tcp", hostOf(h.url))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n") // and never read
	synctest.Wait()
	if n := h.srv.main.inflight.Load(); n != 1 {
		t.Fatalf("%d handlers running, want 1", n)
	}
	h.signal()
	h.at(testExpire - time.Nanosecond)
	if h.returned() {
		t.Fatal("the drain ended with a response unread")
	}
	h.advance(time.Nanosecond)
	if err := h.wait(); !errors.Is(err, ErrShutdownTimeout) {
		t.Fatalf("Serve = %v, want ErrShutdownTimeout", err)
	}
}

// HTTP/2 without TLS (h2c) drains as HTTP/1.1 does: served during the
// delay, then GOAWAY, and a clean end.
func TestHTTP2Drains(t *testing.T) { inBubble(t, testHTTP2Drains) }

func testHTTP2Drains(t *testing.T) {
	h := newHarness(t, nil)
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	h.srv.main.hs.Protocols = &p
	h.start()
	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &cp, DialContext: h.net.Dial}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	get := func() *http.Response {
		t.Helper()
		resp, err := client.Get(h.url + "/work")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.ProtoMajor != 2 {
		t.Fatalf("protocol %s, want HTTP/2", resp.Proto)
	}
	synctest.Wait()
	if _, _, h2, _ := h.srv.main.conns.counts(); h2 != 1 {
		t.Fatalf("%d connections marked HTTP/2, want 1", h2)
	}
	h.signal()
	if resp := get(); resp.StatusCode != 200 || resp.ProtoMajor != 2 {
		t.Fatalf("during the delay: %d %s", resp.StatusCode, resp.Proto)
	}
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// While Healthy says no, the heartbeat stops and the marker goes stale.
// (On the real clock: the marker's age is its file's mtime.)
func TestUnhealthyStopsTheHeartbeat(t *testing.T) {
	healthy := make(chan bool, 1)
	healthy <- true
	h := newHarness(t, nil, func(c *Config) {
		c.LiveMaxAge = 30 * time.Millisecond
		c.Healthy = func() bool { v := <-healthy; healthy <- v; return v }
	}).start()
	fresh := func() bool { return probe.Check(h.marker, 30*time.Millisecond, time.Now()) == nil }
	testutil.WaitFor(t, "fresh marker", fresh)
	<-healthy
	healthy <- false
	testutil.WaitFor(t, "stale marker", func() bool {
		return errors.Is(probe.Check(h.marker, 30*time.Millisecond, time.Now()), probe.ErrStale)
	})
	<-healthy
	healthy <- true
	testutil.WaitFor(t, "fresh again", fresh)
}

// HTTP/2 over TLS drains: a stream in flight at the signal finishes, one
// begun during the delay is served, then GOAWAY and a clean end.
func TestHTTP2OverTLSDrains(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.EnableHTTP2 = true
	ts.StartTLS() // for its certificate and a client that trusts it
	tlsConfig := ts.TLS.Clone()
	clientTransport := ts.Client().Transport.(*http.Transport).Clone()
	ts.Close()
	inBubble(t, func(t *testing.T) { testHTTP2OverTLSDrains(t, tlsConfig, clientTransport) })
}

func testHTTP2OverTLSDrains(t *testing.T, tlsConfig *tls.Config, tr *http.Transport) {

	release := make(chan struct{})
	started := make(chan struct{}, 1)
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			started <- struct{}{}
			<-release
		}
		io.WriteString(w, "hello\n")
	}), func(c *Config) { c.HTTP = &http.Server{TLSConfig: tlsConfig} })
	h.start()
	tr.DialContext = h.net.Dial
	tr.TLSClientConfig.ServerName = "example.com" // in httptest's certificate
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	url := strings.Replace(h.url, "http://", "https://", 1)
	get := func(path string) (*http.Response, error) {
		resp, err := client.Get(url + path)
		if err != nil {
			return nil, err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp, nil
	}
	if resp, err := get("/work"); err != nil || resp.ProtoMajor != 2 {
		t.Fatalf("before the signal: %v %v, want HTTP/2", resp, err)
	}
	slow := make(chan error, 1)
	go func() {
		resp, err := get("/slow")
		if err == nil && (resp.StatusCode != 200 || resp.ProtoMajor != 2) {
			err = fmt.Errorf("%d %s", resp.StatusCode, resp.Proto)
		}
		slow <- err
	}()
	<-started
	h.signal()
	if resp, err := get("/work"); err != nil || resp.StatusCode != 200 {
		t.Fatalf("during the delay: %v %v", resp, err)
	}
	h.at(testDrainDelay)
	if !h.refused(h.url) {
		t.Fatal("the listener still accepts after the drain delay")
	}
	if h.returned() {
		t.Fatal("drain ended with an HTTP/2 stream in flight")
	}
	close(release)
	if err := <-slow; err != nil {
		t.Fatalf("stream in flight at the signal: %v", err)
	}
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v", err)
	}
}

// TLS settings are kept: NextProtos without "h2" (kubebuilder's HTTP/2
// rapid-reset mitigation) negotiates HTTP/1.1; without NextProtos (the
// control) HTTP/2 is offered. (Issue 21 item 11 reported h2 negotiated
// here; with Go 1.26.0 and 1.26.8 ServeTLS keeps such a NextProtos, and
// this test passes on the code as it was: a guard, not a fix.)
func TestNextProtosHonoured(t *testing.T) {
	ts := httptest.NewUnstartedServer(nil)
	ts.EnableHTTP2 = true
	ts.StartTLS()
	base := ts.TLS.Clone()
	roots := ts.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
	ts.Close()
	tests := []struct {
		name       string
		nextProtos []string
		want       string
	}{
		{"http/1.1 only", []string{"http/1.1"}, "http/1.1"},
		{"control: none set", nil, "h2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				cfg := base.Clone()
				cfg.NextProtos = tt.nextProtos
				h := newHarness(t, nil, func(c *Config) { c.HTTP = &http.Server{TLSConfig: cfg} }).start()
				raw, err := h.net.Dial(context.Background(), "tcp", hostOf(h.url))
				if err != nil {
					t.Fatal(err)
				}
				conn := tls.Client(raw, &tls.Config{RootCAs: roots, ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}})
				defer conn.Close()
				if err := conn.Handshake(); err != nil {
					t.Fatal(err)
				}
				if got := conn.ConnectionState().NegotiatedProtocol; got != tt.want {
					t.Fatalf("negotiated %q, want %q", got, tt.want)
				}
			})
		})
	}
}

// A request whose body is still arriving IdleClose after the listener
// closed is cut, and the drain ends clean: a client that sends a byte every
// half second, promises a body with Expect: 100-continue and never sends
// it, or sends a short body, holds it no longer (it held it to the
// deadline). A body that ends within the bound is served (the control).
func TestBodyStillArrivingIsCut(t *testing.T) {
	readAll := func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.ReadAll(r.Body); err != nil {
			return // cut: the connection is gone
		}
		io.WriteString(w, "ok\n")
	}
	ignore := func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") }
	late := testDrainDelay + 2*testIdleClose
	readLate := func(w http.ResponseWriter, r *http.Request) { time.Sleep(late); readAll(w, r) }
	tests := []struct {
		name    string
		handler http.HandlerFunc
		head    string        // the request's head; its body follows a byte at a time
		body    int           // bytes sent, one every 500 ms from the signal
		cut     bool          // the request is cut at the bound
		wantEnd time.Duration // when Serve returns, after the signal
	}{
		{"slow body, read by the handler", readAll, "Content-Length: 1000", 1000, true, testDrainDelay + testIdleClose},
		{"slow body, left to net/http", ignore, "Content-Length: 1000", 1000, true, testDrainDelay + testIdleClose},
		{"short body", readAll, "Content-Length: 1000", 3, true, testDrainDelay + testIdleClose},
		{"Expect: 100-continue and no body", readAll, "Content-Length: 10\r\nExpect: 100-continue", 0, true, testDrainDelay + testIdleClose},
		{"control: a body that ends within the bound", readAll, "Content-Length: 11", 11, false, 11 * 500 * time.Millisecond},
		{"control: a whole body read after the bound", readLate, "Content-Length: 1", 1, false, late},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				h := newHarness(t, tt.handler).start()
				c, err := h.net.Dial(context.Background(), "tcp", hostOf(h.url))
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				go io.Copy(io.Discard, c) // the response, if any
				io.WriteString(c, "POST /incr HTTP/1.1\r\nHost: x\r\n"+tt.head+"\r\n\r\n")
				h.signal()
				defer trickle(c, tt.body)()
				h.at(tt.wantEnd - time.Nanosecond)
				if h.returned() {
					t.Fatalf("Serve returned before +%s", tt.wantEnd)
				}
				h.at(tt.wantEnd)
				if err := h.wait(); err != nil {
					t.Fatalf("Serve = %v, want a clean drain", err)
				}
				wantCut := map[bool]int64{true: 1}[tt.cut]
				if st := h.srv.Stats(); st.RequestsCutInBody != wantCut || st.ConnsCutAtDeadline != 0 {
					t.Fatalf("requests cut in body %d (want %d), conns cut at the deadline %d", st.RequestsCutInBody, wantCut, st.ConnsCutAtDeadline)
				}
			})
		})
	}
}

// On HTTP/2 a body still arriving at the bound is cut by its stream's read
// deadline, and the connection's other streams are not.
func TestHTTP2BodyStillArrivingIsCut(t *testing.T) { inBubble(t, testHTTP2BodyStillArrivingIsCut) }

func testHTTP2BodyStillArrivingIsCut(t *testing.T) {
	release := make(chan struct{})
	h := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		if _, err := io.ReadAll(r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusRequestTimeout)
			return
		}
		io.WriteString(w, "ok\n")
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h.srv.main.hs.Protocols = &p
	h.start()
	var cp http.Protocols
	cp.SetUnencryptedHTTP2(true)
	tr := &http.Transport{Protocols: &cp, DialContext: h.net.Dial}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	post := func(path string, body io.Reader) chan error {
		done := make(chan error, 1)
		go func() {
			resp, err := client.Post(h.url+path, "text/plain", body)
			if err == nil {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					err = fmt.Errorf("%d %s", resp.StatusCode, strings.TrimSpace(string(b)))
				}
			}
			done <- err
		}()
		return done
	}
	held := post("/hold", strings.NewReader("whole"))
	testutil.WaitFor(t, "the held request", func() bool { return h.srv.main.inflight.Load() == 1 })
	pr, pw := io.Pipe()
	defer pw.Close()
	slow := post("/incr", pr)
	testutil.WaitFor(t, "the slow request", func() bool { return h.srv.main.inflight.Load() == 2 })
	h.signal()
	defer trickle(pw, -1)()
	h.at(testDrainDelay + testIdleClose)
	if err := <-slow; err == nil {
		t.Fatal("the slow body was served, want it cut")
	}
	// The connection's other stream goes on.
	close(release)
	if err := <-held; err != nil {
		t.Fatalf("the other stream: %v", err)
	}
	if err := h.wait(); err != nil {
		t.Fatalf("Serve = %v, want a clean drain", err)
	}
	if st := h.srv.Stats(); st.RequestsCutInBody != 1 {
		t.Fatalf("requests cut in body %d, want 1", st.RequestsCutInBody)
	}
}

// trickle writes a byte to w every 500 ms, n times (n < 0: until it fails),
// and returns the function that stops it and waits for it to end.
func trickle(w io.Writer, n int) (stop func()) {
	done, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		for i := 0; n < 0 || i < n; i++ {
			select {
			case <-time.After(500 * time.Millisecond):
			case <-done:
				return
			}
			if _, err := w.Write([]byte("x")); err != nil {
				return
			}
		}
	}()
	return func() { close(done); <-ended }
}
