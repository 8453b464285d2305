package testutil

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"syscall"
	"testing"
)

// MemNet is an in-memory network for tests that run in a testing/synctest
// bubble, where a goroutine blocked on a real socket would keep the
// bubble's clock from moving. Its connections are net.Pipe pairs:
// synchronous (a write waits for the peer's read, as with a full socket
// buffer) and with deadlines on the bubble's clock. Make it inside the
// bubble, as its channels belong to the bubble that made them.
type MemNet struct {
	mu  sync.Mutex
	lns map[string]*MemListener
}

// Listen returns a listener at a new address of the network.
func (n *MemNet) Listen() *MemListener {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.lns == nil {
		n.lns = map[string]*MemListener{}
	}
	l := &MemListener{
		addr:    memAddr(fmt.Sprintf("127.0.0.%d:80", len(n.lns)+1)),
		accepts: make(chan net.Conn),
		closed:  make(chan struct{}),
	}
	n.lns[l.addr.String()] = l
	return l
}

// Dial connects to the listener at addr, as net.Dialer.DialContext does
// (network is ignored). A closed or unknown address refuses the
// connection with ECONNREFUSED.
func (n *MemNet) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	n.mu.Lock()
	l := n.lns[addr]
	n.mu.Unlock()
	refused := &net.OpError{Op: "dial", Net: "tcp", Addr: memAddr(addr), Err: syscall.ECONNREFUSED}
	if l == nil {
		return nil, refused
	}
	server, client := net.Pipe()
	select {
	case l.accepts <- server:
		return client, nil
	case <-l.closed:
	case <-ctx.Done():
	}
	server.Close()
	client.Close()
	if ctx.Err() != nil {
		return nil, ctx.Err()
	}
	return nil, refused
}

// Refused reports whether a connection to addr is refused now.
func (n *MemNet) Refused(addr string) bool {
	c, err := n.Dial(context.Background(), "tcp", addr)
	if err == nil {
		c.Close()
	}
	return err != nil
}

// Client returns an HTTP client on the network that opens a connection
// per request (so that a test sees each request's connection end); its
// transport is closed at the test's end.
func (n *MemNet) Client(t testing.TB) *http.Client {
	tr := &http.Transport{DialContext: n.Dial, DisableKeepAlives: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// DialRaw returns a raw keep-alive HTTP/1.1 connection to addr, closed at
// the test's end.
func (n *MemNet) DialRaw(t testing.TB, addr string) *RawConn {
	t.Helper()
	c, err := n.Dial(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return NewRawConn(t, c)
}

// MemListener is a MemNet listener. Close refuses new connections; those
// already accepted stay open.
type MemListener struct {
	addr    memAddr
	accepts chan net.Conn
	closed  chan struct{}
	once    sync.Once
}

// Accept waits for the next connection, or returns net.ErrClosed once the
// listener is closed.
func (l *MemListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.accepts:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.addr, Err: net.ErrClosed}
	}
}

// Close closes the listener; closing it again does nothing.
func (l *MemListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

// Addr returns the listener's address, "127.0.0.N:80".
func (l *MemListener) Addr() net.Addr { return l.addr }

type memAddr string

func (memAddr) Network() string  { return "tcp" }
func (a memAddr) String() string { return string(a) }
