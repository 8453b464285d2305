package vet

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

var ruleReadinessAtSignal = Rule{
	Name: "readiness-at-signal", Severity: Error,
	Summary: "not ready at SIGTERM where every endpoint may terminate at once",
	Explain: `Kubernetes marks a terminating pod's endpoint ready: false at once (KEP-1672)
and, when a Service has no ready endpoint left, kube-proxy falls back to the
terminating endpoints that are still serving, that is whose readiness probe still
passes (KEP-1669, GA in 1.28). A pod that turns not ready at SIGTERM
(DRAIN_READINESS=not-ready) opts out of that fallback: when every endpoint is
terminating (one replica, a rollout or budget that takes all), its requests are
refused. Measured on a real cluster: 202-405 of 8,000 requests refused when the
only pod was deleted, none when it stayed ready until its listeners closed.`,
	check: checkReadinessAtSignal,
}

// allAtOnce says why every endpoint of w may terminate at once, or "".
func (c *checker) allAtOnce(w *Workload) string {
	if w.Replicas <= 1 {
		return replicas(w.Replicas)
	}
	if len(checkRollout(c, w)) > 0 {
		return "the rollout strategy takes every replica at once"
	}
	for _, b := range c.budgets(w) {
		if b.desired == 0 {
			return "the disruption budget allows evicting every replica"
		}
	}
	return ""
}

func checkReadinessAtSignal(c *checker, w *Workload) []Finding {
	if !w.serves() {
		return nil
	}
	var out []Finding
	eachContainer(w, func(i int, ct *corev1.Container) {
		if libraryEnv(ct).readiness != "not-ready" {
			return
		}
		why := c.allAtOnce(w)
		if why == "" {
			return
		}
		p := envPath(w, i, ct, "DRAIN_READINESS")
		out = append(out, w.finding(ct.Name, p, fieldPath(w.containerPath(false, i, "env"))+"[DRAIN_READINESS]",
			fmt.Sprintf("DRAIN_READINESS=not-ready with %s: when every endpoint terminates at once kube-proxy's fallback to serving endpoints is refused", why),
			"DRAIN_READINESS=serving (the default)"))
	})
	return out
}

var ruleReadinessSingleFailure = Rule{
	Name: "readiness-single-failure", Severity: Warning,
	Summary: "a readiness probe that checks dependencies removes the pod on one failure",
	Explain: `A readiness endpoint that checks dependencies (/ready, /readyz) fails on every
pod at once when the dependency blips: with failureThreshold 1 one slow answer
takes every endpoint out of the Service, and requests are refused until the next
successful probe. Use failureThreshold 2 or more. A warning: whether a blip
happens, and lasts a period, is the dependency's and the load's, not the
manifest's (a tuning choice).`,
	check: checkReadinessSingleFailure,
}

func checkReadinessSingleFailure(_ *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, c *corev1.Container) {
		rp := c.ReadinessProbe
		if rp == nil || rp.HTTPGet == nil || rp.FailureThreshold != 1 {
			return
		}
		if p := strings.TrimRight(rp.HTTPGet.Path, "/"); p != "/ready" && p != "/readyz" && p != "/health/ready" {
			return
		}
		p := w.containerPath(false, i, "readinessProbe", "failureThreshold")
		out = append(out, w.finding(c.Name, p, fieldPath(p),
			fmt.Sprintf("failureThreshold 1 on %s, which checks dependencies: one blip takes every pod out at once", rp.HTTPGet.Path),
			"failureThreshold 2 or more"))
	})
	return out
}

var ruleReadinessMissing = Rule{
	Name: "readiness-missing", Severity: Warning,
	Summary: "a container a Service routes has no readiness probe",
	Explain: `Without a readiness probe a container is ready as soon as it starts: its endpoint
takes traffic before the program listens, and every request routed there in that
moment is refused (each rollout, each restart). A warning: how long a program
takes to listen is the program's. kube-score reports it too.`,
	check: checkReadinessMissing,
}

func checkReadinessMissing(c *checker, w *Workload) []Finding {
	if !w.serves() {
		return nil
	}
	var out []Finding
	for _, i := range c.routedContainers(w) {
		ct := &w.Pod.Containers[i]
		if ct.ReadinessProbe != nil {
			continue
		}
		p := w.containerPath(false, i)
		out = append(out, w.finding(ct.Name, p, fieldPath(p),
			"a Service routes this container, which has no readiness probe: a new pod takes traffic as soon as it starts, before it listens",
			"a readinessProbe on the routed port (pkg/health's /ready)"))
	}
	return out
}

var ruleReadinessPortNotRouted = Rule{
	Name: "readiness-port-not-routed", Severity: Warning,
	Summary: "a tcpSocket readiness probe asks a port no Service routes",
	Explain: `Readiness decides whether a pod receives a Service's traffic. A tcpSocket probe
on a port the Service does not route (a metrics port) passes while the routed
listener is dead: it asks only whether that other port accepts. An httpGet or
grpc probe on a health or admin port is the program's own verdict (ingress-nginx's
:10254/healthz, linkerd's admin /ready, a mesh proxy's :4191/ready,
pkg/health's ADMIN_ADDR), and is not judged: 13 of 14 findings of the earlier
rule on public manifests were that pattern, wrongly flagged. The one true case
(an admin /readyz that passes before the webhook it stands for listens) cannot
be told from the manifest.`,
	check: checkReadinessPort,
}

func checkReadinessPort(c *checker, w *Workload) []Finding {
	var svcs []*Object[corev1.Service]
	for _, s := range c.set.Services {
		if len(s.Obj.Spec.Selector) > 0 && w.selectedBy(s.Meta.Namespace, selectorOf(s.Obj.Spec.Selector)) {
			svcs = append(svcs, s)
		}
	}
	if len(svcs) == 0 {
		return nil
	}
	var out []Finding
	eachContainer(w, func(i int, ct *corev1.Container) {
		rp := ct.ReadinessProbe
		if rp == nil || rp.TCPSocket == nil {
			return // an httpGet or grpc probe is the program's own verdict
		}
		port, ok := containerPort(ct, rp.TCPSocket.Port)
		if !ok || port == libraryEnv(ct).adminPort {
			return
		}
		for _, s := range svcs {
			for _, sp := range s.Obj.Spec.Ports {
				target := sp.TargetPort
				if target.Type == intstr.Int && target.IntVal == 0 {
					target = intstr.FromInt32(sp.Port)
				}
				if n, ok := containerPort(ct, target); ok && n == port {
					return
				}
			}
		}
		p := w.containerPath(false, i, "readinessProbe")
		out = append(out, w.finding(ct.Name, p, fieldPath(p),
			fmt.Sprintf("the tcpSocket readiness probe asks port %d, which no Service selecting the pod routes (%s): it passes while the routed listener is dead", port, serviceNames(svcs)),
			"probe a port the Service routes, or an httpGet readiness endpoint of the program (pkg/health's /ready on ADMIN_ADDR)"))
	})
	return out
}

func serviceNames(svcs []*Object[corev1.Service]) string {
	var names []string
	for _, s := range svcs {
		names = append(names, objectName(s.Kind, s.Meta))
	}
	return strings.Join(names, ", ")
}

var ruleServiceTargetPort = Rule{
	Name: "service-target-port", Severity: Error,
	Summary: "a Service port targets a port name no container of its pods declares",
	Explain: `A Service forwards each port to its targetPort, a number or a container port's
name on the selected pods. A name no container declares leaves the port without
endpoints (the EndpointSlice controller cannot resolve it): every connection is
refused. A number routes whether or not a containerPort lists it (containerPort
is informational), so it is not judged here.`,
}

// serviceTargets checks that each named targetPort of a Service resolves
// on a container of the pods it selects. A number routes whether a
// containerPort declares it or not, so only names are checked.
func (c *checker) serviceTargets(s *Object[corev1.Service]) []Finding {
	if len(s.Obj.Spec.Selector) == 0 {
		return nil
	}
	sel := selectorOf(s.Obj.Spec.Selector)
	var pods []*Workload
	for _, w := range c.set.Workloads {
		if w.selectedBy(s.Meta.Namespace, sel) {
			pods = append(pods, w)
		}
	}
	if len(pods) == 0 {
		return nil
	}
	var out []Finding
	for i, sp := range s.Obj.Spec.Ports {
		target := sp.TargetPort
		if target.Type == intstr.Int {
			continue // a number routes, declared or not
		}
		found := false
		for _, w := range pods {
			for j := range w.Pod.Containers {
				ct := &w.Pod.Containers[j]
				if n, ok := containerPort(ct, target); ok {
					if target.Type == intstr.String || declares(ct, n) {
						found = true
					}
				}
			}
		}
		if found {
			continue
		}
		p := []any{"spec", "ports", i, "targetPort"}
		out = append(out, Finding{Object: objectName(s.Kind, s.Meta), Field: fieldPath(p),
			Message: fmt.Sprintf("port %d targets %s, which no container of %s declares: the port has no endpoints", sp.Port, target.String(), pods[0].Name()),
			Fix:     "target a containerPort's name or number", File: s.src.file, Line: s.src.Line(p...)})
	}
	return out
}
