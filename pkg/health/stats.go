package health

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// Stats is what a Server has done so far, for metrics (pkg/metrics exports
// it to Prometheus) and the drain report. Reading it costs the request path
// nothing: the counters are kept anyway, and the times only after the
// signal.
type Stats struct {
	State State
	// DrainStarted is when the drain began; zero before the signal.
	DrainStarted time.Time
	// Phases are the drain's phases that have ended, in order.
	Phases []PhaseDuration
	// RequestsAfterSignal counts requests that began after the signal;
	// LastRequestAfterSignal is when the last of them on a connection
	// opened after the signal began (zero if none): the endpoint lag,
	// which a request on an older keep-alive connection says nothing of.
	RequestsAfterSignal    int64
	LastRequestAfterSignal time.Time
	// Connections the drain ended, by how: after a Connection: close
	// response (or by the client), once idle for IdleClose, or cut at the
	// deadline; and connections hijacked from net/http, ever.
	ConnsClosedAfterResponse, ConnsClosedIdle, ConnsCutAtDeadline, ConnsHijacked int64
	// RequestsCutInBody counts requests whose body was still arriving
	// IdleClose after their listener closed: the drain closed their
	// HTTP/1 connection or reset their HTTP/2 stream.
	RequestsCutInBody int64
	InFlight          int64 // HTTP handlers running now
	// Long-lived requests (Server.LongLived): open now, asked to leave,
	// left after being asked, and cut at the deadline or a second signal.
	LongLivedOpen, LongLivedAsked, LongLivedLeft, LongLivedCut int64
	TasksStarted, TasksRunning, TasksAbandoned                 int64
	// End is how the drain ended; "" until it has.
	End End
	// Checks are the readiness checks' last results.
	Checks []CheckStats
}

// PhaseDuration is one phase of the drain and how long it took.
type PhaseDuration struct {
	Phase    Phase
	Duration time.Duration
}

// Phase is a phase of the drain, named as the drain report and pkg/metrics
// name it.
type Phase string

// The drain's phases, in order.
const (
	PhaseDelay          Phase = "delay"           // serving through DrainDelay
	PhaseConnections    Phase = "connections"     // the listeners closed and their keep-alive connections ended
	PhaseRequests       Phase = "requests"        // in-flight and hijacked handlers done, components stopped
	PhaseBackgroundWork Phase = "background_work" // the work started with TryGo done
	PhaseHooks          Phase = "hooks"           // the OnStop hooks done
)

// End is how a drain ended.
type End string

// The ends of a drain.
const (
	EndClean        End = "clean"         // every phase done
	EndDeadline     End = "deadline"      // ShutdownTimeout cut it
	EndSecondSignal End = "second signal" // a second signal cut it
)

// CheckStats is a readiness check's last result.
type CheckStats struct {
	Name     string
	OK       bool
	Duration time.Duration
	At       time.Time // zero if it never ran
}

// NoteRequest counts a request that a component serves, such as an RPC of
// pkg/grpcdrain's (health checks are probes: not counted), begun now on a
// connection accepted at connAccepted. From the signal on it counts in
// Stats.RequestsAfterSignal and the drain report; when its connection was
// accepted after the signal, it also sets LastRequestAfterSignal and can
// fire the late-traffic warning, as an HTTP request does.
func (s *Server) NoteRequest(connAccepted time.Time) {
	if !s.draining.Load() {
		return
	}
	s.drained.Add(1)
	if connAccepted.After(s.drainStart) { // set before draining
		s.lastRequest.Store(time.Now().UnixNano())
	}
}

// Stats returns a snapshot of what the Server has done.
func (s *Server) Stats() Stats {
	st := Stats{State: s.State(), RequestsAfterSignal: s.drained.Load()}
	if s.draining.Load() {
		st.DrainStarted = s.drainStart
	}
	if ns := s.lastRequest.Load(); ns != 0 {
		st.LastRequestAfterSignal = time.Unix(0, ns)
	}
	for _, l := range s.drainedListeners() {
		c := &l.conns.stats
		st.ConnsClosedAfterResponse += c.closedAfterResponse.Load()
		st.ConnsClosedIdle += c.closedIdle.Load()
		st.ConnsCutAtDeadline += c.cut.Load()
		st.ConnsHijacked += c.hijacked.Load()
		st.RequestsCutInBody += c.bodiesCut.Load()
		st.InFlight += l.inflight.Load()
	}
	st.LongLivedOpen = int64(s.longLived.count())
	st.LongLivedAsked, st.LongLivedLeft, st.LongLivedCut = s.longLived.asked.Load(), s.longLived.left.Load(), s.longLived.cut.Load()
	running, started := s.tasks.counts()
	st.TasksRunning, st.TasksStarted, st.TasksAbandoned = int64(running), int64(started), s.tasks.abandoned.Load()
	s.report.mu.Lock()
	st.Phases = append([]PhaseDuration(nil), s.report.phases...)
	st.End = s.report.end
	s.report.mu.Unlock()
	st.Checks = s.checkResults()
	return st
}

// drainReport records the drain's phases and end, as they happen.
type drainReport struct {
	mu     sync.Mutex
	phases []PhaseDuration
	end    End
	mark   time.Time // when the current phase began
}

// phase ends the current phase, named, at now.
func (r *drainReport) phase(name Phase, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.phases = append(r.phases, PhaseDuration{name, now.Sub(r.mark)})
	r.mark = now
}

func (r *drainReport) ended(how End) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.end == "" {
		r.end = how
	}
}

// connStats counts how the drain ended a listener's connections.
type connStats struct {
	closedAfterResponse, closedIdle, cut, hijacked atomic.Int64
	// requests whose body was still arriving IdleClose after the
	// listener closed
	bodiesCut atomic.Int64
}

// lateShare is the last part of DrainDelay in which a request means the
// delay was barely long enough: the endpoint removal had not reached every
// client until then.
const lateShare = 5 // the last fifth

// warnLate logs a warning naming DRAIN_DELAY when requests on connections
// opened after the signal still arrived in its last fifth.
func (s *Server) warnLate() {
	d := s.cfg.DrainDelay
	ns := s.lastRequest.Load()
	if d <= 0 || ns == 0 {
		return
	}
	last := time.Unix(0, ns).Sub(s.drainStart)
	if last < d-d/lateShare {
		return
	}
	s.log.Warn("requests were still arriving at the end of the drain delay: raise DRAIN_DELAY",
		"last_request_after_signal", last.Round(time.Millisecond), "drain_delay", d,
		"requests_after_signal", s.drained.Load())
}

// logReport writes the drain report: one line with each phase's duration,
// the counts and how the drain ended.
func (s *Server) logReport(end End) {
	s.report.ended(end)
	st := s.Stats()
	attrs := []any{"end", string(st.End), "elapsed", s.sinceDrain().Round(time.Millisecond)}
	for _, p := range st.Phases {
		attrs = append(attrs, slog.Duration("phase_"+string(p.Phase), p.Duration.Round(time.Microsecond)))
	}
	last := time.Duration(0)
	if !st.LastRequestAfterSignal.IsZero() {
		last = st.LastRequestAfterSignal.Sub(st.DrainStarted).Round(time.Millisecond)
	}
	attrs = append(attrs,
		"requests_after_signal", st.RequestsAfterSignal, "last_request_after_signal", last,
		"conns_closed_after_response", st.ConnsClosedAfterResponse, "conns_closed_idle", st.ConnsClosedIdle,
		"conns_cut_at_deadline", st.ConnsCutAtDeadline, "conns_hijacked", st.ConnsHijacked,
		"requests_cut_in_body", st.RequestsCutInBody,
		"long_lived_asked", st.LongLivedAsked, "long_lived_left", st.LongLivedLeft, "long_lived_cut", st.LongLivedCut,
		"tasks_started", st.TasksStarted, "tasks_abandoned", st.TasksAbandoned)
	s.log.Info("drain report", attrs...)
}
