package cluster

import (
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// proxy is a Service address with kube-proxy's iptables behaviour: each new
// connection goes to a random endpoint of its current view, and stays there
// (existing connections are never moved). Its view is what the endpoint
// controller published a propagation lag ago.
//
// It picks as kube-proxy's CategorizeEndpoints (pkg/proxy/topology.go,
// Cluster traffic policy) does: among the ready endpoints; when there is
// none, among the endpoints that are serving and terminating ("If there
// are no ready endpoints, fall back to terminating endpoints that are
// serving", KEP-1669, ProxyTerminatingEndpoints, GA in 1.28); when there
// is neither, the connection is refused (iptables' REJECT rule for a
// Service without endpoints).
type proxy struct {
	ln      net.Listener
	lag     time.Duration
	applied func(endpoints) // told each view put in place
	failed  func(error)     // told each connection it could not route

	mu   sync.Mutex
	view endpoints
	seq  uint64 // sequence of the view in place
	next uint64 // sequence of the last published view

	conns    sync.WaitGroup
	refused  atomic.Int64 // connections with no endpoint, or whose dial failed
	byTarget sync.Map     // addr -> *atomic.Int64: connections sent there

	respMu sync.Mutex
	oks    map[string][]time.Time // addr -> when each 2xx response began
}

func newProxy(addr string, lag time.Duration, applied func(endpoints), failed func(error)) (*proxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	p := &proxy{ln: ln, lag: lag, applied: applied, failed: failed, oks: map[string][]time.Time{}}
	go p.serve()
	return p, nil
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

// endpoints is a Service's EndpointSlice as kube-proxy reads it: the
// addresses of the ready endpoints, and of those serving and terminating.
type endpoints struct {
	ready, servingTerminating []string
}

// publish hands the proxy a new endpoint set; it takes effect after the
// lag. Views are applied in publication order.
func (p *proxy) publish(endpoints endpoints) {
	p.mu.Lock()
	p.next++
	seq := p.next
	p.mu.Unlock()
	if p.lag <= 0 {
		p.apply(seq, endpoints)
		return
	}
	time.AfterFunc(p.lag, func() { p.apply(seq, endpoints) })
}

// apply puts the view published seq-th in place, unless a view published
// after it is already in place.
func (p *proxy) apply(seq uint64, endpoints endpoints) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if seq > p.seq {
		p.view, p.seq = endpoints, seq
		p.applied(endpoints)
	}
}

// viewSize is how many ready endpoints the proxy routes to.
func (p *proxy) viewSize() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.view.ready)
}

// pick returns a ready endpoint, else a serving terminating one, else "".
func (p *proxy) pick() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	set := p.view.candidates()
	if len(set) == 0 {
		return ""
	}
	return set[rand.IntN(len(set))]
}

// candidates are the endpoints a new connection may go to: the ready ones;
// when there is none, the serving terminating ones; else none.
func (e endpoints) candidates() []string {
	if len(e.ready) > 0 {
		return e.ready
	}
	return e.servingTerminating
}

func (p *proxy) serve() {
	for {
		c, err := p.ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			// EMFILE and friends under a connection storm: back off
			// and go on, as net/http does; giving up would wedge the
			// Service with a full backlog.
			time.Sleep(5 * time.Millisecond)
			continue
		}
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.handle(c.(*net.TCPConn))
		}()
	}
}

func (p *proxy) handle(client *net.TCPConn) {
	target := p.pick()
	var backend net.Conn
	var err error
	if target != "" {
		backend, err = net.DialTimeout("tcp", target, time.Second)
	}
	if target == "" || err != nil {
		// iptables DNATs the SYN to a dead or missing endpoint: the
		// client sees its connection refused or reset.
		p.refused.Add(1)
		if err == nil {
			err = errors.New("no endpoint")
		}
		p.failed(err)
		client.SetLinger(0)
		client.Close()
		return
	}
	n, _ := p.byTarget.LoadOrStore(target, new(atomic.Int64))
	n.(*atomic.Int64).Add(1)
	b := backend.(*net.TCPConn)
	done := make(chan struct{}, 2)
	pipe := func(dst *net.TCPConn, src io.Reader) {
		io.Copy(dst, src)
		dst.CloseWrite() // pass the FIN on
		done <- struct{}{}
	}
	go pipe(b, client)
	go pipe(client, &okCounter{conn: b, p: p, target: target})
	<-done
	<-done
	client.Close()
	b.Close()
}

func (p *proxy) close() {
	p.ln.Close()
}

// okCounter reads a backend's responses and notes when each 2xx begins
// (a response whose first bytes are "HTTP/1.1 2"). HTTP/1.1 responses on a
// connection are sequential, so a status line begins a read.
type okCounter struct {
	conn   *net.TCPConn // not embedded: io.Copy would use its WriteTo and skip Read
	p      *proxy
	target string
}

func (o *okCounter) Read(b []byte) (int, error) {
	n, err := o.conn.Read(b)
	if n >= 10 && string(b[:10]) == "HTTP/1.1 2" {
		o.p.respMu.Lock()
		o.p.oks[o.target] = append(o.p.oks[o.target], time.Now())
		o.p.respMu.Unlock()
	}
	return n, err
}

// oksBetween counts the 2xx responses target began in [from, to].
func (p *proxy) oksBetween(target string, from, to time.Time) int {
	p.respMu.Lock()
	defer p.respMu.Unlock()
	n := 0
	for _, t := range p.oks[target] {
		if !t.Before(from) && !t.After(to) {
			n++
		}
	}
	return n
}
