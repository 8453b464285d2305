package health

import (
	"strconv"
	"sync"
)

// ReadinessPolicy is what /ready (and a gRPC health service drained with
// the Server) answers from the first signal to the end of the drain.
//
// Kubernetes takes a terminating pod's endpoint out of its Service on its
// own. The EndpointSlice controller marks it ready: false and terminating:
// true at once, whatever the readiness probe says. It mirrors the probe's
// verdict in serving. kube-proxy routes to ready endpoints only. When a
// Service has none left, it falls back to the endpoints that are
// terminating and still serving (KEP-1669, GA in 1.28). So a pod gains
// nothing by failing its readiness probe at the signal. It loses every
// request of the window in which all the Service's endpoints are
// terminating: its only replica deleted, every pod deleted at once, or a
// node drain that evicts every replica.
type ReadinessPolicy int

const (
	// ReadyWhileServing, the default, keeps /ready answering 200 from
	// the signal for as long as the drained listeners accept connections
	// (through the drain delay), with a body that says the pod is
	// draining; it turns 503 when they stop accepting. A failing check
	// makes it 503 at any time. Choose it for traffic routed by
	// EndpointSlices: kube-proxy, and load balancers and meshes that read
	// them.
	ReadyWhileServing ReadinessPolicy = iota
	// NotReadyAtSignal turns /ready 503 at the signal (kube-apiserver's
	// pattern). Choose it for a load balancer that health-checks pods
	// directly and does not read EndpointSlices (a cloud load balancer
	// with IP targets and its own health check): there the 503 is what
	// takes the pod out.
	NotReadyAtSignal
)

// String returns the policy's name.
func (p ReadinessPolicy) String() string {
	switch p {
	case ReadyWhileServing:
		return "ready-while-serving"
	case NotReadyAtSignal:
		return "not-ready-at-signal"
	}
	return "ReadinessPolicy(" + strconv.Itoa(int(p)) + ")"
}

// Reasons OnReadyChange hears during the drain.
const (
	reasonDraining = "draining: serving until the listeners close"
	reasonClosed   = "draining: not serving"
)

// readiness is the serving side of /ready: whether the drain has made the
// pod not ready for good, and what OnReadyChange last heard, to call it on
// each change only.
type readiness struct {
	onChange func(ready bool, reason string)
	closed   chan struct{} // closed when the pod is not ready for good
	once     sync.Once

	mu      sync.Mutex
	known   bool
	ready   bool
	reason  string
	final   bool          // nothing after the close is reported
	changed chan struct{} // closed at the next change, then replaced
}

func newReadiness(onChange func(bool, string)) *readiness {
	return &readiness{onChange: onChange, closed: make(chan struct{}), changed: make(chan struct{})}
}

// next returns the verdict last reported (false before the first) and a
// channel closed at the next change.
func (r *readiness) next() (bool, <-chan struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.known && r.ready, r.changed
}

// isClosed reports whether the pod is not ready for good.
func (r *readiness) isClosed() bool { return isClosed(r.closed) }

// isClosed reports whether ch is closed, without waiting.
func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// close makes the pod not ready for good, once.
func (r *readiness) close() {
	r.once.Do(func() {
		close(r.closed)
		r.report(false, reasonClosed, true)
	})
}

// draining notes the signal: a pod that is ready says it is draining.
func (r *readiness) draining() {
	r.mu.Lock()
	ready := r.known && r.ready
	r.mu.Unlock()
	if ready {
		r.set(true, reasonDraining)
	}
}

// set reports what /ready answers now, unless the pod is not ready for
// good.
func (r *readiness) set(ready bool, reason string) { r.report(ready, reason, false) }

func (r *readiness) report(ready bool, reason string, final bool) {
	r.mu.Lock()
	if r.final {
		r.mu.Unlock()
		return
	}
	changed := !r.known || r.ready != ready || r.reason != reason
	r.known, r.ready, r.reason, r.final = true, ready, reason, final
	if changed {
		close(r.changed)
		r.changed = make(chan struct{})
	}
	r.mu.Unlock()
	if changed && r.onChange != nil {
		r.onChange(ready, reason)
	}
}
