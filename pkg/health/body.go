package health

import (
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"time"
)

// A request whose body is still arriving when the drain closes its listener
// has IdleClose more to arrive (counted from its first read, if that came
// later); then it is cut. Without that bound, a client
// that sends a body a byte at a time (or promises one with
// Expect: 100-continue and never sends it) holds the drain to
// ShutdownTimeout: the handler waits in Read, and net/http, after a handler
// that did not read the body, waits to discard it.
//
// An HTTP/1 request is cut by closing its connection (the conns' closeQuiet
// does it); an HTTP/2 one by its stream's read deadline, which resets the
// stream and leaves the connection's other streams alone.

// watchedBody is a request's body, telling the drain while it is being
// read.
type watchedBody struct {
	io.ReadCloser
	l   *httpListener
	ctx context.Context // the request's: it holds the HTTP/1 connection
	h2  *http.ResponseController
	mu  sync.Mutex
	// read to its end, or closed, or the handler returned (HTTP/2)
	done  bool
	since time.Time   // its first Read (HTTP/2)
	timer *time.Timer // HTTP/2: cuts it when it is due
	cut   bool        // HTTP/2: its read deadline has passed
}

// watchBody replaces r's body, if it has one, with a watchedBody and
// returns the function to call when the handler returns.
func (l *httpListener) watchBody(w http.ResponseWriter, r *http.Request) (handlerDone func()) {
	if r.Body == nil || r.Body == http.NoBody {
		return func() {}
	}
	b := &watchedBody{ReadCloser: r.Body, l: l, ctx: r.Context()}
	if r.ProtoMajor == 2 {
		b.h2 = http.NewResponseController(w)
	}
	r.Body = b
	return func() {
		done := b.finish()
		if !done && b.h2 == nil && r.ContentLength != 0 {
			// net/http reads what is left of the body before the
			// connection's next request: still in a body read.
			l.conns.setBodyPending(b.ctx, true)
		}
	}
}

func (b *watchedBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	if !b.done {
		if b.h2 == nil {
			b.l.conns.setBodyPending(b.ctx, true)
		} else if b.since.IsZero() {
			b.since = time.Now()
			b.l.bodies.add(b)
		}
	}
	b.mu.Unlock()
	n, err := b.ReadCloser.Read(p)
	if err != nil {
		b.finish()
	}
	return n, err
}

func (b *watchedBody) Close() error {
	b.finish()
	return b.ReadCloser.Close()
}

// finish records that the body was read to its end (or failed, or was
// closed, or its handler returned) and reports whether it was already.
func (b *watchedBody) finish() (was bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.done {
		return true
	}
	b.done = true
	if b.h2 == nil {
		b.l.conns.setBodyPending(b.ctx, false)
		return false
	}
	if b.timer != nil {
		b.timer.Stop()
	}
	if !b.since.IsZero() {
		b.l.bodies.remove(b)
	}
	return false
}

// cutAt cuts an HTTP/2 body at t if it is still being read then: its
// stream's read deadline passes, which resets the stream.
func (b *watchedBody) cutAt(t time.Time) {
	b.timer = time.AfterFunc(time.Until(t), func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.done || b.cut {
			return
		}
		b.cut = true
		b.l.conns.stats.bodiesCut.Add(1)
		if err := b.h2.SetReadDeadline(time.Now()); err != nil {
			b.l.srv.log.Debug("cutting a request body", "server", b.l.name, "error", err)
		}
	})
}

// h2Bodies are the HTTP/2 request bodies being read, and the time from
// which they are cut (zero until the listener closes). A body is cut
// IdleClose after the later of the listener's close and its first Read.
type h2Bodies struct {
	mu    sync.Mutex
	reads map[*watchedBody]struct{}
	bound time.Time
	idle  time.Duration
}

// add records b, whose first Read began (b.mu held).
func (hb *h2Bodies) add(b *watchedBody) {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	if !hb.bound.IsZero() {
		b.cutAt(later(hb.bound, b.since.Add(hb.idle)))
		return
	}
	if hb.reads == nil {
		hb.reads = make(map[*watchedBody]struct{})
	}
	hb.reads[b] = struct{}{}
}

func (hb *h2Bodies) remove(b *watchedBody) {
	hb.mu.Lock()
	delete(hb.reads, b)
	hb.mu.Unlock()
}

// cutFrom sets the bound: IdleClose from now, the listener's close.
func (hb *h2Bodies) cutFrom(idle time.Duration) time.Time {
	hb.mu.Lock()
	hb.idle, hb.bound = idle, time.Now().Add(idle)
	reads := hb.reads
	hb.reads = nil
	hb.mu.Unlock()
	for b := range reads {
		b.mu.Lock()
		if !b.done {
			b.cutAt(later(hb.bound, b.since.Add(idle)))
		}
		b.mu.Unlock()
	}
	return hb.bound
}

// setBodyPending records whether the request on ctx's HTTP/1 connection is
// reading its body, and since when.
func (cs *conns) setBodyPending(ctx context.Context, pending bool) {
	c, _ := ctx.Value(connKey{}).(net.Conn)
	now := time.Now()
	cs.mu.Lock()
	if ci := cs.http1[c]; ci != nil {
		if pending && !ci.bodyPending {
			ci.bodySince = now
		}
		ci.bodyPending = pending
	}
	cs.mu.Unlock()
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}
