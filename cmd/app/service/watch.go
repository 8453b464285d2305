package service

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/drainwell/drainwell/cmd/app/counter"
	"github.com/drainwell/drainwell/pkg/health"
)

// The watch of the counter: GET /watch (server-sent events) and the gRPC
// Watch stream. Each event is an applied increment, its ID the count it
// produced (counter.Events). A client that reconnects, to this pod or
// another, says the last event it saw and gets the ones after it: none
// missed, none twice.

// WatchPing is how long a watch stream stays silent before it sends a
// keep-alive comment (": ping"), so that proxies that end idle
// connections (60 s for nginx's proxy_read_timeout and most load
// balancers) keep it.
const WatchPing = 15 * time.Second

// At its turn to leave the drain, a watch stream asks its client to
// reconnect after WatchRetry plus up to WatchRetryJitter (retry:), so that
// the clients of one pod do not come back in step.
const (
	WatchRetry       = 500 * time.Millisecond
	WatchRetryJitter = 500 * time.Millisecond
)

// watchWriteTimeout bounds each write of a watch stream: a client that
// stopped reading is let go, not held until the drain's deadline.
const watchWriteTimeout = 10 * time.Second

// handleWatch is GET /watch: the counter's events as server-sent events,
// each "id: <n>\ndata: <n>\n\n". It resumes after the Last-Event-ID header
// (an EventSource sends it when it reconnects), else after ?after=<n> (for
// clients that cannot set headers; 0: from the first event); with neither,
// it sends the events from now on. Events the counter no longer keeps are
// said, never skipped silently: "event: missed", data {"from":F,"to":T},
// with id T so that a reconnection does not say it again. At the drain's
// turn (health.Server.LongLived) it sends a retry: hint and ends, and the
// client reconnects elsewhere with Last-Event-ID.
func (s *service) handleWatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	events, ok := s.counter.(counter.Events)
	if !ok {
		http.Error(w, "this counter keeps no events", http.StatusNotImplemented)
		return
	}
	after, resume, err := resumePoint(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if !resume {
		if after, err = s.counter.Get(r.Context()); err != nil {
			s.throttled.log(s.log, slog.LevelError, "count unavailable", "error", err)
			http.Error(w, "count unavailable", http.StatusServiceUnavailable)
			return
		}
	}
	turn, left := s.declareLongLived(r.Context())
	defer left()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // nginx: pass each event on at once
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}
	defer sw.rc.SetWriteDeadline(time.Time{}) // the connection may serve another request
	sw.send()
	ping := cmp.Or(s.watchPing, WatchPing)
	for sw.err == nil {
		if turn.Err() != nil {
			// The client went away, or the drain cut the connection:
			// nothing to say. At the turn: where to resume is the
			// client's Last-Event-ID; when, the hint.
			if context.Cause(turn) == health.ErrTurnToLeave {
				sw.retry(retryHint())
			}
			return
		}
		wait, cancel := context.WithTimeout(turn, ping)
		ids, err := events.After(wait, after)
		cancel()
		var missed *counter.MissedError
		switch {
		case err == nil:
			sw.events(ids)
			after = ids[len(ids)-1]
		case errors.As(err, &missed):
			sw.missed(missed)
			after = missed.To
		case turn.Err() != nil: // the loop's top says why
		case errors.Is(err, context.DeadlineExceeded):
			sw.ping()
		default:
			// Redis could not be read: the client comes back after
			// the hint, with its Last-Event-ID.
			s.throttled.log(s.log, slog.LevelError, "watch: events unavailable", "error", err)
			sw.retry(retryHint())
			return
		}
	}
}

// resumePoint returns the event after which a watch resumes: the
// Last-Event-ID header, which wins (an EventSource keeps its URL when it
// reconnects), else ?after=. resume is false with neither: a new watch.
func resumePoint(r *http.Request) (after int64, resume bool, err error) {
	v, name := r.Header.Get("Last-Event-ID"), "Last-Event-ID"
	if v == "" {
		v, name = r.URL.Query().Get("after"), "after"
	}
	if v == "" {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%s %q is not an event ID (a count: 0 or more)", name, v)
	}
	return n, true, nil
}

// declareLongLived declares the request of ctx long-lived to the drain
// (health.Server.LongLived), when the service has one.
func (s *service) declareLongLived(ctx context.Context) (turn context.Context, left func()) {
	if s.longLived == nil {
		return ctx, func() {}
	}
	return s.longLived(ctx)
}

// retryHint returns the reconnection delay a watch stream asks for.
func retryHint() time.Duration {
	return WatchRetry + rand.N(WatchRetryJitter)
}

// sseWriter writes server-sent events, each flushed, and keeps the first
// error.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	buf []byte
	err error
}

// send writes what buf holds, and flushes.
func (sw *sseWriter) send() {
	if sw.err != nil {
		return
	}
	_ = sw.rc.SetWriteDeadline(time.Now().Add(watchWriteTimeout)) // unsupported: the drain's deadline bounds it
	if _, err := sw.w.Write(sw.buf); err != nil {
		sw.err = err
	} else if err := sw.rc.Flush(); err != nil {
		sw.err = err
	}
	sw.buf = sw.buf[:0]
}

func (sw *sseWriter) events(ids []int64) {
	for _, n := range ids {
		sw.buf = fmt.Appendf(sw.buf, "id: %d\ndata: %d\n\n", n, n)
	}
	sw.send()
}

func (sw *sseWriter) missed(m *counter.MissedError) {
	sw.buf = fmt.Appendf(sw.buf, "event: missed\nid: %d\ndata: {\"from\":%d,\"to\":%d}\n\n", m.To, m.From, m.To)
	sw.send()
}

func (sw *sseWriter) ping() {
	sw.buf = append(sw.buf, ": ping\n\n"...)
	sw.send()
}

func (sw *sseWriter) retry(d time.Duration) {
	sw.buf = fmt.Appendf(sw.buf, "retry: %d\n\n", d.Milliseconds())
	sw.send()
}

// grpcWatch is GET /watch over gRPC: the events after the request's value
// (0: from the first), in order, until the stream's context ends.
// pkg/grpcdrain asks a server stream to leave at its turn by ending that
// context; the client resumes after the last value it received. Events no
// longer kept end the stream with OUT_OF_RANGE, which names them and where
// to resume.
func (s *service) grpcWatch(_ any, stream grpc.ServerStream) error {
	in := new(wrapperspb.Int64Value)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	events, ok := s.counter.(counter.Events)
	if !ok {
		return status.Error(codes.Unimplemented, "this counter keeps no events")
	}
	after := in.GetValue()
	if after < 0 {
		return status.Errorf(codes.InvalidArgument, "after %d is not an event ID (a count: 0 or more)", after)
	}
	ctx := stream.Context()
	for {
		if ctx.Err() != nil {
			return status.FromContextError(ctx.Err()).Err()
		}
		ids, err := events.After(ctx, after)
		var missed *counter.MissedError
		switch {
		case err == nil:
		case ctx.Err() != nil:
			return status.FromContextError(ctx.Err()).Err()
		case errors.As(err, &missed):
			return status.Errorf(codes.OutOfRange, "%v: resume after %d", missed, missed.To)
		default:
			s.throttled.log(s.log, slog.LevelError, "watch: events unavailable", "error", err)
			return status.Error(codes.Unavailable, "events unavailable")
		}
		for _, n := range ids {
			if err := stream.SendMsg(wrapperspb.Int64(n)); err != nil {
				return err
			}
		}
		after = ids[len(ids)-1]
	}
}
