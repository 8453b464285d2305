package health

import (
	"context"
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// ErrTurnToLeave is the cause (context.Cause) of a long-lived request's
// turn context when the drain asks the request to leave.
var ErrTurnToLeave = errors.New("draining: this long-lived request's turn to leave")

// NoLeaveWindow, as Config.LeaveWindow, asks every long-lived request to
// leave at the same instant (any negative value does).
const NoLeaveWindow time.Duration = -1

// LongLived declares the request of ctx long-lived: a server-sent events
// stream, a WebSocket, a streaming RPC. It returns turn, a context derived
// from ctx, and left, which the handler calls (defer it) once it has left.
//
// turn ends when it is the request's turn to leave, with the cause
// ErrTurnToLeave, or when ctx ends. The asking begins when the drain delay
// is over, as the listeners stop accepting. The drain asks the long-lived
// requests one at a time, the oldest first: of n requests, the i-th (from
// 0) at i/n of Config.LeaveWindow. So their clients reconnect to other
// pods at a bounded rate, not all in one second. At its turn a handler
// ends its stream the way its protocol resumes: an SSE stream after a
// retry: hint, a WebSocket with close code 1001 (going away). A request
// declared after the asking began is asked at once.
//
// The drain waits for every handler, declared or not, until the deadline.
// A request still open then is cut with its connection, and turn ends
// with the cause ErrShutdownTimeout (ErrInterrupted after a second
// signal). A hijacked connection that never declared itself is cut then
// too, as before.
//
// Stats counts them: open, asked to leave, left after being asked, and
// cut.
func (s *Server) LongLived(ctx context.Context) (turn context.Context, left func()) {
	return s.longLived.add(ctx)
}

// longLived holds the long-lived requests that have not left.
type longLived struct {
	mu     sync.Mutex
	open   map[*leaver]struct{}
	seq    uint64
	asking bool // the drain has begun asking: a new request is asked at once

	asked, left, cut atomic.Int64
}

// leaver is one long-lived request.
type leaver struct {
	seq    uint64 // the order of declaration: the oldest is asked first
	cancel context.CancelCauseFunc
	asked  bool // under longLived.mu
}

func (l *longLived) add(ctx context.Context) (context.Context, func()) {
	turn, cancel := context.WithCancelCause(ctx)
	lv := &leaver{cancel: cancel}
	l.mu.Lock()
	if l.open == nil {
		l.open = make(map[*leaver]struct{})
	}
	l.seq++
	lv.seq = l.seq
	l.open[lv] = struct{}{}
	late := l.asking
	l.mu.Unlock()
	if late {
		l.ask(lv)
	}
	var once sync.Once
	return turn, func() {
		once.Do(func() {
			l.mu.Lock()
			_, open := l.open[lv]
			delete(l.open, lv)
			asked := lv.asked
			l.mu.Unlock()
			if open && asked {
				l.left.Add(1)
			}
			cancel(context.Canceled)
		})
	}
}

// count returns how many long-lived requests are open.
func (l *longLived) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// ask ends lv's turn context, once.
func (l *longLived) ask(lv *leaver) {
	l.mu.Lock()
	_, open := l.open[lv]
	first := open && !lv.asked
	lv.asked = true
	l.mu.Unlock()
	if first {
		l.asked.Add(1)
		lv.cancel(ErrTurnToLeave)
	}
}

// spread asks every open long-lived request to leave, the oldest first,
// one at a time, spread evenly over window. From its start a request
// declared later is asked at once. It returns when it has asked them all,
// or when ctx ends.
func (l *longLived) spread(ctx context.Context, window time.Duration) {
	l.mu.Lock()
	l.asking = true
	queue := make([]*leaver, 0, len(l.open))
	for lv := range l.open {
		queue = append(queue, lv)
	}
	l.mu.Unlock()
	sort.Slice(queue, func(i, j int) bool { return queue[i].seq < queue[j].seq })
	start := time.Now()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for i, lv := range queue {
		if window > 0 {
			at := start.Add(window * time.Duration(i) / time.Duration(len(queue)))
			timer.Reset(time.Until(at))
			select {
			case <-timer.C:
			case <-ctx.Done():
				return
			}
		}
		l.ask(lv)
	}
}

// cutAll counts every request still open as cut, and ends its context with
// cause. The drain calls it when it gives up, as it cuts the connections.
func (l *longLived) cutAll(cause error) int {
	l.mu.Lock()
	l.asking = true
	open := l.open
	l.open = nil
	l.mu.Unlock()
	for lv := range open {
		lv.cancel(cause)
	}
	l.cut.Add(int64(len(open)))
	return len(open)
}
