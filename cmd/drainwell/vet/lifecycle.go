package vet

import (
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
)

var rulePreStopAndDrainDelay = Rule{
	Name: "prestop-and-drain-delay", Severity: Warning,
	Summary: "a preStop sleep and DRAIN_DELAY add up",
	Explain: `A preStop sleep delays SIGTERM; DRAIN_DELAY then delays the drain again. Both
count against terminationGracePeriodSeconds, and only DRAIN_DELAY is checked by
the drain report's late-traffic warning. Use one: DRAIN_DELAY.`,
	check: checkPreStopAndDelay,
}

func checkPreStopAndDelay(_ *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, c *corev1.Container) {
		d, pre := libraryEnv(c), preStopTime(c)
		if !d.hasDelay || d.delay == 0 || pre == 0 {
			return
		}
		p := w.containerPath(false, i, "lifecycle", "preStop")
		out = append(out, w.finding(c.Name, p, fieldPath(p),
			fmt.Sprintf("preStop sleep %s and DRAIN_DELAY %s add up: %s before the drain stops accepting", pre, d.delay, pre+d.delay),
			"use one: remove the preStop hook (DRAIN_DELAY is checked by the drain report)"))
	})
	return out
}

var ruleStopSignal = Rule{
	Name: "stop-signal", Severity: Error,
	Summary: "lifecycle.stopSignal is one the service does not drain on, or lacks spec.os.name",
	Explain: `lifecycle.stopSignal (KEP-4960, alpha in 1.33, gate ContainerStopSignals)
replaces the image's STOPSIGNAL. A process that does not handle it keeps running
until SIGKILL: no drain at all. pkg/health drains on SIGTERM and SIGINT. The API
also requires spec.os.name with a stopSignal.`,
	check: checkStopSignal,
}

func checkStopSignal(_ *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, c *corev1.Container) {
		if c.Lifecycle == nil || c.Lifecycle.StopSignal == nil {
			return
		}
		sig := *c.Lifecycle.StopSignal
		p := w.containerPath(false, i, "lifecycle", "stopSignal")
		if libraryEnv(c).uses() && sig != corev1.SIGTERM && sig != corev1.SIGINT {
			out = append(out, w.finding(c.Name, p, fieldPath(p),
				fmt.Sprintf("stopSignal %s is not a signal pkg/health drains on (SIGTERM, SIGINT): the process runs until SIGKILL", sig),
				"remove stopSignal, or add the signal to health.Config.Signals"))
		}
		if w.Pod.OS == nil || w.Pod.OS.Name == "" {
			out = append(out, w.finding(c.Name, p, fieldPath(p), "a stopSignal needs spec.os.name: the API server rejects the pod",
				"set spec.os.name: linux"))
		}
	})
	return out
}

var ruleSidecarGrace = Rule{
	Name: "sidecar-grace", Severity: Warning,
	Summary: "native sidecars get what is left of the grace period",
	Explain: `Native sidecars (init containers with restartPolicy Always, GA in 1.33) get
SIGTERM only after every main container has exited, in reverse start order, with
what is left of terminationGracePeriodSeconds; when it runs out every container
left gets SIGTERM and SIGKILL 2 s later. A sidecar with a drain of its own needs
the main container's drain plus its own within the grace period.`,
	check: checkSidecarGrace,
}

func checkSidecarGrace(_ *checker, w *Workload) []Finding {
	mainDrain := time.Duration(0)
	eachContainer(w, func(_ int, c *corev1.Container) {
		d := libraryEnv(c)
		mainDrain = max(mainDrain, preStopTime(c)+d.shutdown)
	})
	var out []Finding
	for i := range w.Pod.InitContainers {
		c := &w.Pod.InitContainers[i]
		if !sidecar(c) {
			continue
		}
		d := libraryEnv(c)
		own := preStopTime(c) + d.shutdown
		if own == 0 {
			continue
		}
		if need := mainDrain + own; need > w.grace() {
			p := append(append([]any(nil), w.podPath...), "terminationGracePeriodSeconds")
			out = append(out, w.finding(c.Name, p, fieldPath(p),
				fmt.Sprintf("the sidecar's drain (%s) starts after the main containers' (%s): %s exceeds terminationGracePeriodSeconds %s", own, mainDrain, need, w.grace()),
				fmt.Sprintf("terminationGracePeriodSeconds %d or more", int(need/time.Second)+5)))
		}
	}
	return out
}

var ruleKubeVersion = Rule{
	Name: "kube-version", Severity: Warning,
	Summary: "a field needs a newer cluster, or a feature gate",
	Explain: `Some lifecycle fields are newer than the oldest cluster the manifests target
(--kube-version): preStop sleep (beta 1.30, GA 1.34; seconds 0 from 1.34),
native sidecars (GA 1.33), livenessProbe.terminationGracePeriodSeconds (GA 1.27),
lifecycle.stopSignal (alpha 1.33, off by default). An older API server rejects
the field or drops it silently.`,
	check: checkKubeVersion,
}

// checkKubeVersion flags fields newer than the oldest target cluster. Each
// fact names a field, the minor release from which it works without a
// feature gate, and what it is. A release of 0 is alpha, which needs a
// gate.
func checkKubeVersion(c *checker, w *Workload) []Finding {
	var out []Finding
	add := func(path []any, since int, what string) {
		if since > 0 && c.opts.KubeVersion >= since {
			return
		}
		msg := fmt.Sprintf("%s needs Kubernetes 1.%d (the oldest target is 1.%d)", what, since, c.opts.KubeVersion)
		if since == 0 {
			msg = what + " is alpha: off unless its feature gate is on"
		}
		out = append(out, w.finding("", path, fieldPath(path), msg, "set --kube-version to your oldest cluster, or drop the field"))
	}
	for i := range w.Pod.Containers {
		ct := &w.Pod.Containers[i]
		if lc := ct.Lifecycle; lc != nil {
			if lc.PreStop != nil && lc.PreStop.Sleep != nil {
				if lc.PreStop.Sleep.Seconds == 0 {
					add(w.containerPath(false, i, "lifecycle", "preStop", "sleep"), 34, "preStop sleep of 0 seconds")
				} else {
					add(w.containerPath(false, i, "lifecycle", "preStop", "sleep"), 30, "the preStop sleep action")
				}
			}
			if lc.StopSignal != nil {
				add(w.containerPath(false, i, "lifecycle", "stopSignal"), 0, "lifecycle.stopSignal (ContainerStopSignals)")
			}
		}
		if lp := ct.LivenessProbe; lp != nil && lp.TerminationGracePeriodSeconds != nil {
			add(w.containerPath(false, i, "livenessProbe", "terminationGracePeriodSeconds"), 27, "a probe-level terminationGracePeriodSeconds")
		}
	}
	for i := range w.Pod.InitContainers {
		if sidecar(&w.Pod.InitContainers[i]) {
			add(w.containerPath(true, i, "restartPolicy"), 33, "a native sidecar (restartPolicy Always)")
		}
	}
	return out
}
