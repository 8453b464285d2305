package health

import (
	"context"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// conns tracks the server's connections through http.Server.ConnState, so
// that the drain can end each HTTP/1 connection without racing its client.
// The server closes a connection only after a response that carried
// Connection: close (net/http does that itself), or once it has been idle
// for a quiet period. http.Server.Shutdown instead closes every idle
// connection at once. A client that picked one of them from its pool while
// the FIN was in flight loses its request.
type conns struct {
	draining *atomic.Bool // the Server's
	stats    connStats
	mu       sync.Mutex
	http1    map[net.Conn]*connInfo // not hijacked; HTTP/2 ones are marked
	// hijacked connections belong to their handler; the drain closes
	// them only at the deadline.
	hijacked map[net.Conn]struct{}
	changed  chan struct{} // a connection closed or was hijacked
	cutting  atomic.Bool   // the deadline is closing what is left: counted as cut
}

type connInfo struct {
	state   http.ConnState
	since   time.Time // when it entered state
	opened  time.Time
	h2      bool // carries HTTP/2: drained by Shutdown's GOAWAY
	closing bool // Close was called by the drain
	// its request is reading its body (the handler, or net/http after
	// it): the drain cuts it IdleClose after the listener closed
	bodyPending bool
	bodySince   time.Time
}

type connKey struct{}

func newConns(draining *atomic.Bool) *conns {
	return &conns{
		draining: draining,
		http1:    make(map[net.Conn]*connInfo),
		hijacked: make(map[net.Conn]struct{}),
		changed:  make(chan struct{}, 1),
	}
}

// connContext puts the connection in its context, so that a request can
// mark its connection as HTTP/2.
func (cs *conns) connContext(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}

// openedAfter reports whether the request's connection was accepted after
// t.
func (cs *conns) openedAfter(ctx context.Context, t time.Time) bool {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	ci := cs.http1[c]
	return ci != nil && ci.opened.After(t)
}

// markH2 records that the request's connection speaks HTTP/2.
func (cs *conns) markH2(ctx context.Context) {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	cs.mu.Lock()
	if ci := cs.http1[c]; ci != nil {
		ci.h2 = true
	}
	cs.mu.Unlock()
}

func (cs *conns) connState(c net.Conn, st http.ConnState) {
	now := time.Now()
	cs.mu.Lock()
	switch st {
	case http.StateNew:
		cs.http1[c] = &connInfo{state: st, since: now, opened: now}
	case http.StateActive, http.StateIdle:
		if ci := cs.http1[c]; ci != nil {
			ci.state, ci.since, ci.bodyPending = st, now, false
		}
	case http.StateHijacked:
		delete(cs.http1, c)
		cs.hijacked[c] = struct{}{}
		cs.stats.hijacked.Add(1)
	case http.StateClosed:
		// Closed by net/http after a Connection: close response, or by
		// the client; the drain's own closes are counted where made.
		if ci := cs.http1[c]; ci != nil && !ci.closing && cs.draining.Load() && !cs.cutting.Load() {
			cs.stats.closedAfterResponse.Add(1)
		}
		delete(cs.http1, c)
		delete(cs.hijacked, c)
	}
	cs.mu.Unlock()
	if st == http.StateHijacked || st == http.StateClosed {
		select {
		case cs.changed <- struct{}{}:
		default:
		}
	}
}

// closeQuiet closes the HTTP/1 connections that have carried no request for
// quiet or longer, and from bodyBound on those whose request is still
// reading its body; it returns how many HTTP/1 connections remain open,
// and the soonest time one of those may become due.
func (cs *conns) closeQuiet(quiet time.Duration, bodyBound time.Time) (remaining int, next time.Time) {
	now := time.Now()
	var due, stuck []net.Conn
	cs.mu.Lock()
	for c, ci := range cs.http1 {
		if ci.h2 {
			continue
		}
		remaining++
		if ci.closing {
			continue
		}
		at := ci.since.Add(quiet)
		if ci.state == http.StateActive {
			if !ci.bodyPending {
				continue
			}
			at = later(bodyBound, ci.bodySince.Add(quiet))
		}
		if !now.Before(at) {
			ci.closing = true
			if ci.state == http.StateActive {
				stuck = append(stuck, c)
			} else {
				due = append(due, c)
			}
			continue
		}
		if !now.Before(at) {
			ci.closing = true
			due = append(due, c)
			continue
		}
		if next.IsZero() || at.Before(next) {
			next = at
		}
	}
	cs.mu.Unlock()
	for _, c := range append(due, stuck...) {
		_ = c.Close() // ending it is the point; an error says it was already gone
	}
	cs.stats.closedIdle.Add(int64(len(due)))
	cs.stats.bodiesCut.Add(int64(len(stuck)))
	return remaining, next
}

// counts returns the open connections by kind.
func (cs *conns) counts() (active, idle, h2, hijacked int) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	for _, ci := range cs.http1 {
		switch {
		case ci.h2:
			h2++
		case ci.state == http.StateActive:
			active++
		default:
			idle++
		}
	}
	return active, idle, h2, len(cs.hijacked)
}

// closeHijacked closes every hijacked connection and returns how many.
func (cs *conns) closeHijacked() int {
	cs.mu.Lock()
	list := make([]net.Conn, 0, len(cs.hijacked))
	for c := range cs.hijacked {
		list = append(list, c)
	}
	cs.mu.Unlock()
	for _, c := range list {
		_ = c.Close() // as above
	}
	return len(list)
}
