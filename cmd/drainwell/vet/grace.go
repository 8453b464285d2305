package vet

import (
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// Margin is the time the rules leave between the drain's bound and SIGKILL.
// The deadline's own cleanup (hooks, the marker) needs a moment.
const Margin = 5 * time.Second

var ruleGracePeriod = Rule{
	Name: "grace-period", Severity: Error,
	Summary: "terminationGracePeriodSeconds leaves no time for preStop plus the drain",
	Explain: `The kubelet runs the preStop hook, then sends SIGTERM, and sends SIGKILL when
terminationGracePeriodSeconds (default 30) has passed since the pod was marked
terminating: the preStop hook's time counts against it. A drain bounded by
SHUTDOWN_TIMEOUT (pkg/health) must therefore end, with a margin for its own
cleanup, before that: preStop + SHUTDOWN_TIMEOUT + 5s <= terminationGracePeriodSeconds.
Otherwise SIGKILL cuts the requests and background work the drain was finishing.
A container that serves an admission webhook with failurePolicy Fail also needs
its delay (preStop sleep, DRAIN_DELAY) plus the webhook's timeoutSeconds (default
10): the API server waits that long for a call accepted at the end of the delay,
and refuses the request when SIGKILL cuts it. The message names the webhook.`,
	check: checkGrace,
}

func checkGrace(ck *checker, w *Workload) []Finding {
	var out []Finding
	grace := w.grace()
	hooks := ck.failClosedHooks(w).containers
	eachContainer(w, func(i int, c *corev1.Container) {
		need, what := drainNeed(c, grace)
		// A container that serves a webhook keeps each call it accepts
		// for up to the webhook's timeoutSeconds: the API server waits
		// that long. A call accepted at the end of the delay needs it.
		var hook *admissionWebhook
		if h := slowest(hooks[i]); h != nil {
			if delay, timed := servingDelay(c); timed && delay > 0 && delay+h.timeout > need {
				hook, need = h, delay+h.timeout
				what = fmt.Sprintf("%s + timeoutSeconds %d of the webhook %s (%s) = %s",
					delayWhat(c), int(h.timeout/time.Second), h.name, h.config, need)
			}
		}
		if what == "" || need <= grace {
			return
		}
		p := append(append([]any(nil), w.podPath...), "terminationGracePeriodSeconds")
		fix := fmt.Sprintf("set terminationGracePeriodSeconds to at least %d", int((need+time.Second-1)/time.Second))
		cut := "SIGKILL cuts the drain"
		switch d := libraryEnv(c); {
		case hook != nil:
			cut = "SIGKILL cuts admission calls the API server still waits for"
			if d.hasShutdown && d.shutdown < d.delay+hook.timeout {
				// The drain's own deadline would cut them too.
				fix += fmt.Sprintf(" and SHUTDOWN_TIMEOUT to at least %s", d.delay+hook.timeout)
			}
			fix += ", or lower the webhook's timeoutSeconds"
		case d.hasShutdown:
			fix += " or lower SHUTDOWN_TIMEOUT"
		}
		out = append(out, w.finding(c.Name, p, fieldPath(p),
			fmt.Sprintf("%s exceeds terminationGracePeriodSeconds %s: %s", what, grace, cut), fix))
	})
	return out
}

// drainNeed is the grace period container c needs for its preStop hook and
// its drain, and how that adds up; what is "" when vet cannot tell.
func drainNeed(c *corev1.Container, grace time.Duration) (need time.Duration, what string) {
	pre, d := preStopTime(c), libraryEnv(c)
	switch {
	case d.hasShutdown && pre > 0:
		need = pre + d.shutdown + Margin
		return need, fmt.Sprintf("preStop %s + SHUTDOWN_TIMEOUT %s + margin %s = %s", pre, d.shutdown, Margin, need)
	case d.hasShutdown:
		need = d.shutdown + Margin
		return need, fmt.Sprintf("SHUTDOWN_TIMEOUT %s + margin %s = %s", d.shutdown, Margin, need)
	case pre > 0 && pre >= grace:
		// Without SHUTDOWN_TIMEOUT the program's shutdown time is
		// unknown. Only a preStop hook that takes the whole grace period
		// is flagged. The message adds the margin as the least the
		// shutdown after it needs.
		need = pre + Margin
		return need, fmt.Sprintf("preStop %s (+ margin %s for the shutdown after it = %s)", pre, Margin, need)
	}
	return pre, ""
}

// delayWhat names the parts of a container's serving delay.
func delayWhat(c *corev1.Container) string {
	var parts []string
	if pre := preStopTime(c); pre > 0 {
		parts = append(parts, fmt.Sprintf("preStop %s", pre))
	}
	if d := libraryEnv(c).delay; d > 0 {
		parts = append(parts, fmt.Sprintf("DRAIN_DELAY %s", d))
	}
	if d := programDelay(c); d > 0 {
		parts = append(parts, fmt.Sprintf("the program's own delay %s", d))
	}
	return strings.Join(parts, " + ")
}

var ruleGraceShort = Rule{
	Name: "grace-short", Severity: Warning,
	Summary: "a routed server with a grace period under 10s and no preStop hook",
	Explain: `SIGTERM comes at once, while the endpoint's removal is still reaching every node
(about a second, more on a busy cluster): a server that exits at SIGTERM refuses
what the stale endpoints still send, and one that drains has only the grace
period for the delay and its requests. With no preStop hook and a grace under
10s (the microservices demo's gRPC servers: 5s) there is no room for either. A
warning: whether the program drains is the program's. A pkg/health service
(DRAIN_DELAY, SHUTDOWN_TIMEOUT or the live probe) is judged by grace-period, and
a server of a failurePolicy Fail admission webhook by webhook-no-delay.`,
	check: checkGraceShort,
}

// shortGrace is the grace period under which a routed server with no
// preStop hook has no room to drain.
const shortGrace = 10 * time.Second

func checkGraceShort(c *checker, w *Workload) []Finding {
	grace := w.grace()
	if !w.serves() || w.Pod.TerminationGracePeriodSeconds == nil || grace >= shortGrace {
		return nil
	}
	var out []Finding
	hooks := c.failClosedHooks(w).containers
	for _, i := range c.routedContainers(w) {
		ct := &w.Pod.Containers[i]
		// A webhook server is judged by webhook-no-delay, which names the
		// webhook.
		if d, timed := servingDelay(ct); d > 0 || !timed || libraryEnv(ct).uses() || len(hooks[i]) > 0 {
			continue
		}
		p := append(append([]any(nil), w.podPath...), "terminationGracePeriodSeconds")
		out = append(out, w.finding(ct.Name, p, fieldPath(p),
			fmt.Sprintf("terminationGracePeriodSeconds %s and no preStop hook on a container a Service routes: SIGTERM comes while the endpoint's removal is still propagating, with no room to drain", grace),
			"lifecycle.preStop.sleep of 5s and terminationGracePeriodSeconds 30 (or drain in the program: pkg/health)"))
	}
	return out
}

var ruleDrainDelayShort = Rule{
	Name: "drain-delay-short", Severity: Error,
	Summary: "DRAIN_DELAY is shorter than what the endpoint change needs",
	Explain: `After SIGTERM the pod keeps serving for DRAIN_DELAY while its endpoint's change
reaches every kube-proxy (about 1 s measured). With DRAIN_READINESS=serving (the
default) it also serves kube-proxy's fallback while every endpoint terminates,
until a replacement passes its first probes: periodSeconds x successThreshold +
propagation. With DRAIN_READINESS=not-ready a load balancer that probes the pod
must notice: periodSeconds x failureThreshold + propagation. A shorter delay
refuses the requests still routed to the pod.`,
	check: checkDrainDelay,
}

func checkDrainDelay(c *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, ct *corev1.Container) {
		d := libraryEnv(ct)
		rp := ct.ReadinessProbe
		if !d.hasDelay || rp == nil {
			return
		}
		period := time.Duration(orDefault(rp.PeriodSeconds, 10)) * time.Second
		var need time.Duration
		var what string
		if d.readiness == "not-ready" {
			f := orDefault(rp.FailureThreshold, 3)
			need = time.Duration(f)*period + c.opts.Propagation
			what = fmt.Sprintf("readiness periodSeconds %d x failureThreshold %d + propagation %s", int(period/time.Second), f, c.opts.Propagation)
		} else {
			s := orDefault(rp.SuccessThreshold, 1)
			need = time.Duration(s)*period + c.opts.Propagation
			what = fmt.Sprintf("a replacement's readiness (periodSeconds %d x successThreshold %d) + propagation %s", int(period/time.Second), s, c.opts.Propagation)
		}
		if delay, _ := servingDelay(ct); delay >= need {
			return
		}
		p := envPath(w, i, ct, "DRAIN_DELAY")
		out = append(out, w.finding(ct.Name, p, fieldPath(w.containerPath(false, i, "env"))+"[DRAIN_DELAY]",
			fmt.Sprintf("DRAIN_DELAY %s does not cover %s = %s", d.delay, what, need),
			fmt.Sprintf("DRAIN_DELAY %s or more", need+2*time.Second)))
	})
	return out
}
