package envtestproof

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// proxy stands for a Service and kube-proxy. Each new connection goes to a
// random backend among the ready ones, as iptables' DNAT sends it. A change
// of the ready set reaches it lag late, as an EndpointSlice change reaches
// kube-proxy. A backend that refuses the dial costs the client its
// connection: kube-proxy does not retry another pod.
type proxy struct {
	ln  net.Listener
	lag time.Duration

	mu      sync.Mutex
	ready   []string // the backends new connections go to
	asked   int      // the last route call's number
	applied int      // the number of the route call ready reflects
	refused int      // connections whose backend refused the dial
	conns   map[net.Conn]struct{}
}

func newProxy(t *testing.T, lag time.Duration) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &proxy{ln: ln, lag: lag, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// addr is the proxy's address: the webhook's url points here.
func (p *proxy) addr() string { return p.ln.Addr().String() }

// route makes backends the ready set, lag from now. The returned channel is
// closed once the proxy routes by it. A later call wins over an earlier one
// still on its way.
func (p *proxy) route(backends ...string) <-chan struct{} {
	p.mu.Lock()
	p.asked++
	n := p.asked
	p.mu.Unlock()
	applied := make(chan struct{})
	time.AfterFunc(p.lag, func() {
		p.mu.Lock()
		if n > p.applied {
			p.ready, p.applied = backends, n
		}
		p.mu.Unlock()
		close(applied)
	})
	return applied
}

// refusedDials is how many connections found their backend gone.
func (p *proxy) refusedDials() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.refused
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		go p.forward(c)
	}
}

func (p *proxy) forward(client net.Conn) {
	p.mu.Lock()
	var backend string
	if len(p.ready) > 0 {
		backend = p.ready[rand.IntN(len(p.ready))]
	}
	p.conns[client] = struct{}{}
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.conns, client)
		p.mu.Unlock()
		client.Close()
	}()
	if backend == "" {
		return // no endpoint: the connection is refused
	}
	server, err := net.DialTimeout("tcp", backend, time.Second)
	if err != nil {
		p.mu.Lock()
		p.refused++
		p.mu.Unlock()
		return
	}
	defer server.Close()
	// Each direction's end (FIN) is passed on as it comes, as a NAT does.
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, err := io.Copy(dst, src)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			// A reset: end both sides at once.
			client.Close()
			server.Close()
		}
		if tc, ok := dst.(*net.TCPConn); ok {
			tc.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, client)
	go pipe(client, server)
	<-done
	<-done
}

func (p *proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}
