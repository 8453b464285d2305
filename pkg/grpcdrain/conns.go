package grpcdrain

import (
	"net"
	"sync"
)

// connWatch records the connections the gRPC server accepts. It hands them
// on unchanged, because grpc-go sets TCP_USER_TIMEOUT only on a
// *net.TCPConn. The drain uses it to tell a connection still delivering
// its responses from one whose client reads nothing. Such a client
// advertises a zero HTTP/2 flow-control window, or stops reading its
// socket. It holds GracefulStop after every handler has returned, with its
// responses queued in the server. The kernel's count of bytes the peer
// acknowledged says which kind a connection is.
type connWatch struct {
	net.Listener
	mu    sync.Mutex
	conns map[*net.TCPConn]struct{}
	prune int // prune closed connections when there are this many
}

func (w *connWatch) Accept() (net.Conn, error) {
	c, err := w.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok && err == nil {
		w.mu.Lock()
		if w.conns == nil {
			w.conns = make(map[*net.TCPConn]struct{})
		}
		w.conns[tc] = struct{}{}
		if len(w.conns) >= max(w.prune, 64) {
			w.pruneLocked()
			w.prune = 2 * len(w.conns)
		}
		w.mu.Unlock()
	}
	return c, err
}

// pruneLocked forgets the connections that have closed.
func (w *connWatch) pruneLocked() {
	for c := range w.conns {
		if !isOpen(c) {
			delete(w.conns, c)
		}
	}
}

// delivered returns the bytes the peers of the open connections have
// acknowledged, and how many are open. Where the kernel does not say
// (bytesAcked's ok is false on an open connection outside Linux), nothing
// counts as progress.
func (w *connWatch) delivered() (acked uint64, open int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for c := range w.conns {
		n, ok := bytesAcked(c)
		if !ok {
			if !isOpen(c) {
				delete(w.conns, c)
				continue
			}
		}
		acked += n
		open++
	}
	return acked, open
}

// isOpen reports whether c has not been closed.
func isOpen(c *net.TCPConn) bool {
	rc, err := c.SyscallConn()
	if err != nil {
		return false
	}
	return rc.Control(func(uintptr) {}) == nil
}
