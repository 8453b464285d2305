package vet

import (
	"fmt"
	"path"
	"strconv"
	"strings"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// pkg/health's defaults, which a variable set to 0 takes (healthenv).
const (
	defaultDrainDelay      = 5 * time.Second
	defaultShutdownTimeout = 25 * time.Second
)

// Margin is the time the rules leave between the drain's bound and SIGKILL:
// the deadline's own cleanup (hooks, the marker) needs a moment.
const Margin = 5 * time.Second

// MaxWedge is how long a frozen process may keep its pod before the kubelet
// has killed it.
const MaxWedge = time.Minute

// MinExecLivenessPeriod keeps an exec liveness probe's node cost low: each
// run costs the node about 35-66 ms of CPU (the runtime's exec), an httpGet
// about nothing.
const MinExecLivenessPeriod = 10

var rules = []Rule{
	{
		Name: "grace-period", Severity: Error,
		Summary: "terminationGracePeriodSeconds leaves no time for preStop plus the drain",
		Explain: `The kubelet runs the preStop hook, then sends SIGTERM, and sends SIGKILL when
terminationGracePeriodSeconds (default 30) has passed since the pod was marked
terminating: the preStop hook's time counts against it. A drain bounded by
SHUTDOWN_TIMEOUT (pkg/health) must therefore end, with a margin for its own
cleanup, before that: preStop + SHUTDOWN_TIMEOUT + 5s <= terminationGracePeriodSeconds.
Otherwise SIGKILL cuts the requests and background work the drain was finishing.`,
		check: checkGrace,
	},
	{
		Name: "exec-needs-program", Severity: Error,
		Summary: "a preStop hook or exec probe runs a program a shell-less image does not have",
		Explain: `An exec hook or probe runs its command inside the container. Distroless,
scratch and static images have no /bin/sh, kill, sleep, cat or curl: a preStop
hook fails at once (FailedPreStopHook, and SIGTERM comes without the wait it was
for), an exec liveness probe fails forever and the pod restarts in a loop. Use
the sleep action (lifecycle.preStop.sleep, GA in 1.34), an httpGet probe, or the
image's own binary (["/app","live"] with pkg/probe). The rule fires only for an
image known to have no shell (distroless but its :debug tags, scratch, static):
an image it cannot tell about is left alone (a Debian-based image with bash was
a wrong error).`,
		check: checkExecProgram,
	},
	{
		Name: "exec-liveness-cost", Severity: Warning,
		Summary: "an exec liveness probe runs more often than every 10 s",
		Explain: `Each exec probe makes the container runtime create a process in the
container: about 35-66 ms of node CPU per run, measured on a real kubelet with
containerd (an httpGet or tcpSocket probe costs about nothing). Every second that
is 3-7% of a core per pod. Keep exec liveness probes at periodSeconds 10 or more,
and readiness probes on httpGet.`,
		check: checkExecCost,
	},
	{
		Name: "wedge-restart", Severity: Warning,
		Summary: "a frozen process keeps its pod for over a minute",
		Explain: `A wedged process (deadlocked, frozen) is found by the liveness probe: with a
liveness marker it goes stale after LIVE_MAX_AGE, then the probe must fail
failureThreshold times periodSeconds apart, then the kubelet kills the container
after the probe-level terminationGracePeriodSeconds, or the pod's when that is
not set (a frozen process never acts on SIGTERM, so the whole grace is waited).
Set livenessProbe.terminationGracePeriodSeconds (GA in 1.27) and periods that
bring it under a minute.`,
		check: checkWedge,
	},
	{
		Name: "rollout-all-at-once", Severity: Error,
		Summary: "the rollout strategy can take every replica at once",
		Explain: `A Deployment's RollingUpdate removes up to maxUnavailable pods before their
replacements are ready; with maxUnavailable at the replica count (100%, or 1 with
one replica and maxSurge 0) every pod goes at once, and Recreate kills them all
before starting any. Every endpoint is then terminating or absent: requests are
refused until a new pod is ready. Use maxSurge 1, maxUnavailable 0. A
DaemonSet with maxUnavailable 100% (and no surge) replaces every node's pod at
once; a StatefulSet of one replica cannot surge, so each update deletes its only
pod before the new one runs. It judges
pods a Service routes (a port not named for metrics): a singleton controller
no Service routes is often Recreate on purpose (no two leaders at once).`,
		check: checkRollout,
	},
	{
		Name: "pdb-blocks-eviction", Severity: Warning,
		Summary: "the disruption budget blocks every eviction",
		Explain: `The eviction API (kubectl drain, the cluster autoscaler) evicts a pod only
while the healthy pods exceed the budget's desired count (minAvailable, or the
replicas less maxUnavailable). With minAvailable at the replica count, or
maxUnavailable 0, no pod can ever be evicted: node drains hang until someone
deletes the pods by hand, which ignores the budget altogether.`,
		check: checkPDBBlocks,
	},
	{
		Name: "pdb-allows-all", Severity: Warning,
		Summary: "the disruption budget lets a drain evict every replica at once",
		Explain: `A budget that allows as many disruptions as there are replicas lets a node
drain evict them all together: every endpoint is terminating at once, and the
Service lives on kube-proxy's fallback to terminating endpoints that still serve
(KEP-1669) until the replacements are ready. Keep at least one replica: minAvailable 1
with two or more replicas.`,
		check: checkPDBAllowsAll,
	},
	{
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
	},
	{
		Name: "readiness-single-failure", Severity: Warning,
		Summary: "a readiness probe that checks dependencies removes the pod on one failure",
		Explain: `A readiness endpoint that checks dependencies (/ready, /readyz) fails on every
pod at once when the dependency blips: with failureThreshold 1 one slow answer
takes every endpoint out of the Service, and requests are refused until the next
successful probe. Use failureThreshold 2 or more. A warning: whether a blip
happens, and lasts a period, is the dependency's and the load's, not the
manifest's (a tuning choice).`,
		check: checkReadinessSingleFailure,
	},
	{
		Name: "readiness-missing", Severity: Warning,
		Summary: "a container a Service routes has no readiness probe",
		Explain: `Without a readiness probe a container is ready as soon as it starts: its endpoint
takes traffic before the program listens, and every request routed there in that
moment is refused (each rollout, each restart). A warning: how long a program
takes to listen is the program's. kube-score reports it too.`,
		check: checkReadinessMissing,
	},
	{
		Name: "grace-short", Severity: Warning,
		Summary: "a routed server with a grace period under 10s and no preStop hook",
		Explain: `SIGTERM comes at once, while the endpoint's removal is still reaching every node
(about a second, more on a busy cluster): a server that exits at SIGTERM refuses
what the stale endpoints still send, and one that drains has only the grace
period for the delay and its requests. With no preStop hook and a grace under
10s (the microservices demo's gRPC servers: 5s) there is no room for either. A
warning: whether the program drains is the program's. A pkg/health service
(DRAIN_DELAY, SHUTDOWN_TIMEOUT or the live probe) is judged by grace-period.`,
		check: checkGraceShort,
	},
	{
		Name: "probes-same", Severity: Warning,
		Summary: "the liveness probe asks the readiness endpoint",
		Explain: `Readiness takes a pod out of its Service; liveness restarts it. When liveness asks
the readiness endpoint (an httpGet path named for readiness, /ready or /readyz,
that the readiness probe asks too), which by its name answers for dependencies,
a dependency outage restarts every pod at once: that fixes nothing and drops what
they were doing. A shared /healthz or grpc health service is not judged: nothing
in the manifest says what it checks (on eight public projects' manifests, none
checked a dependency). A warning: what the endpoint checks is the program's.`,
		check: checkSameProbe,
	},
	{
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
	},
	{
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
	},
	{
		Name: "prestop-and-drain-delay", Severity: Warning,
		Summary: "a preStop sleep and DRAIN_DELAY add up",
		Explain: `A preStop sleep delays SIGTERM; DRAIN_DELAY then delays the drain again. Both
count against terminationGracePeriodSeconds, and only DRAIN_DELAY is checked by
the drain report's late-traffic warning. Use one: DRAIN_DELAY.`,
		check: checkPreStopAndDelay,
	},
	{
		Name: "stop-signal", Severity: Error,
		Summary: "lifecycle.stopSignal is one the service does not drain on, or lacks spec.os.name",
		Explain: `lifecycle.stopSignal (KEP-4960, alpha in 1.33, gate ContainerStopSignals)
replaces the image's STOPSIGNAL. A process that does not handle it keeps running
until SIGKILL: no drain at all. pkg/health drains on SIGTERM and SIGINT. The API
also requires spec.os.name with a stopSignal.`,
		check: checkStopSignal,
	},
	{
		Name: "sidecar-grace", Severity: Warning,
		Summary: "native sidecars get what is left of the grace period",
		Explain: `Native sidecars (init containers with restartPolicy Always, GA in 1.33) get
SIGTERM only after every main container has exited, in reverse start order, with
what is left of terminationGracePeriodSeconds; when it runs out every container
left gets SIGTERM and SIGKILL 2 s later. A sidecar with a drain of its own needs
the main container's drain plus its own within the grace period.`,
		check: checkSidecarGrace,
	},
	{
		Name: "kube-version", Severity: Warning,
		Summary: "a field needs a newer cluster, or a feature gate",
		Explain: `Some lifecycle fields are newer than the oldest cluster the manifests target
(--kube-version): preStop sleep (beta 1.30, GA 1.34; seconds 0 from 1.34),
native sidecars (GA 1.33), livenessProbe.terminationGracePeriodSeconds (GA 1.27),
lifecycle.stopSignal (alpha 1.33, off by default). An older API server rejects
the field or drops it silently.`,
		check: checkKubeVersion,
	},
}

// routedContainers returns, in order, the indexes of w's containers that declare a
// port a Service selecting the pods routes traffic to (by name or number):
// not a headless Service (discovery, as Prometheus uses it), not a metrics
// port (a scrape reaches pods ready or not).
func (c *checker) routedContainers(w *Workload) []int {
	routed := make([]bool, len(w.Pod.Containers))
	for _, s := range c.set.Services {
		if len(s.Obj.Spec.Selector) == 0 || !w.selectedBy(s.Meta.Namespace, selectorOf(s.Obj.Spec.Selector)) ||
			s.Obj.Spec.ClusterIP == corev1.ClusterIPNone || strings.HasSuffix(s.Meta.Name, "-metrics") {
			continue
		}
		for _, sp := range s.Obj.Spec.Ports {
			if strings.Contains(sp.Name, "metrics") {
				continue
			}
			target := sp.TargetPort
			if target.Type == intstr.Int && target.IntVal == 0 {
				target = intstr.FromInt32(sp.Port)
			}
			for i := range w.Pod.Containers {
				ct := &w.Pod.Containers[i]
				if n, ok := containerPort(ct, target); ok && declares(ct, n) {
					routed[i] = true
				}
			}
		}
	}
	var out []int
	for i, r := range routed {
		if r {
			out = append(out, i)
		}
	}
	return out
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
	for _, i := range c.routedContainers(w) {
		ct := &w.Pod.Containers[i]
		if preStopTime(ct) > 0 || (ct.Lifecycle != nil && ct.Lifecycle.PreStop != nil) || libraryEnv(ct).uses() {
			continue
		}
		p := append(append([]any(nil), w.podPath...), "terminationGracePeriodSeconds")
		out = append(out, w.finding(ct.Name, p, fieldPath(p),
			fmt.Sprintf("terminationGracePeriodSeconds %s and no preStop hook on a container a Service routes: SIGTERM comes while the endpoint's removal is still propagating, with no room to drain", grace),
			"lifecycle.preStop.sleep of 5s and terminationGracePeriodSeconds 30 (or drain in the program: pkg/health)"))
	}
	return out
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

// readinessEndpoint reports a liveness probe that asks an endpoint named
// for readiness (/ready, /readyz, /health/ready...), which the readiness
// probe asks too: by its name it answers for the dependencies. A shared
// /healthz or grpc health service says nothing of what it checks (on
// eight public projects none checked a dependency: 11 findings of a
// same-handler rule, all wrong).
func readinessEndpoint(ready, live *corev1.Probe) bool {
	if ready == nil || live == nil || ready.HTTPGet == nil || live.HTTPGet == nil {
		return false
	}
	p := strings.ToLower(live.HTTPGet.Path)
	return live.HTTPGet.Path == ready.HTTPGet.Path && live.HTTPGet.Port == ready.HTTPGet.Port &&
		(strings.Contains(p, "ready") || strings.Contains(p, "readiness"))
}

func checkSameProbe(_ *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, ct *corev1.Container) {
		if !readinessEndpoint(ct.ReadinessProbe, ct.LivenessProbe) {
			return
		}
		p := w.containerPath(false, i, "livenessProbe")
		out = append(out, w.finding(ct.Name, p, fieldPath(p),
			fmt.Sprintf("the liveness probe asks the readiness endpoint %s: when it fails for a dependency (a database down), the kubelet restarts every pod instead of taking them out of the Service", ct.LivenessProbe.HTTPGet.Path),
			"liveness on what only a restart fixes (pkg/probe's live, a /livez that checks the process), readiness on the dependencies"))
	})
	return out
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

// The library's environment in a container.
type drainEnv struct {
	shutdown, delay, maxAge time.Duration
	hasShutdown, hasDelay   bool
	hasMaxAge               bool
	readiness               string // "serving" unless set
	adminPort               int32  // -1: none
}

func libraryEnv(c *corev1.Container) drainEnv {
	e := env(c)
	d := drainEnv{readiness: "serving", adminPort: -1}
	if embedsLibrary(c) {
		// Configured in code, or by the env below: where the env is
		// silent, the library's defaults hold.
		d.shutdown, d.hasShutdown = defaultShutdownTimeout, true
		d.delay, d.hasDelay = defaultDrainDelay, true
	}
	// As healthenv reads them: 0 takes the default, DRAIN_DELAY=none is
	// no delay.
	if v, ok := parseDur(e["SHUTDOWN_TIMEOUT"]); ok {
		d.shutdown, d.hasShutdown = v, true
		if v == 0 {
			d.shutdown = defaultShutdownTimeout
		}
	}
	switch v, ok := parseDur(e["DRAIN_DELAY"]); {
	case e["DRAIN_DELAY"] == "none":
		d.delay, d.hasDelay = 0, true
	case ok && v == 0:
		d.delay, d.hasDelay = defaultDrainDelay, true
	case ok:
		d.delay, d.hasDelay = v, true
	}
	d.maxAge, d.hasMaxAge = parseDur(e["LIVE_MAX_AGE"])
	if v := e["DRAIN_READINESS"]; v != "" {
		d.readiness = v
	}
	if a, ok := e["ADMIN_ADDR"]; ok {
		if i := strings.LastIndexByte(a, ':'); i >= 0 {
			if n, err := strconv.Atoi(a[i+1:]); err == nil {
				d.adminPort = int32(n) // #nosec G109 G115 -- a port number, checked by the service itself
			}
		}
	}
	return d
}

// embedsLibrary reports a container whose liveness probe is the library's
// `live` subcommand (exec [BIN, "live"], as the README embeds it): a
// service drained by pkg/health, whatever its env says.
func embedsLibrary(c *corev1.Container) bool {
	lp := c.LivenessProbe
	return lp != nil && lp.Exec != nil && len(lp.Exec.Command) >= 2 && lp.Exec.Command[1] == "live" &&
		path.Base(lp.Exec.Command[0]) != "probe" // the standalone probe checks a marker, not a drain
}

// uses reports whether the container is a pkg/health service.
func (d drainEnv) uses() bool { return d.hasShutdown || d.hasDelay }

func parseDur(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	d, err := time.ParseDuration(v)
	return d, err == nil
}

// preStopTime is how long a container's preStop hook takes, when it can
// tell: a sleep action, or an exec of `sleep N` (or `probe sleep 5s`).
func preStopTime(c *corev1.Container) time.Duration {
	lc := c.Lifecycle
	if lc == nil || lc.PreStop == nil {
		return 0
	}
	if s := lc.PreStop.Sleep; s != nil {
		return time.Duration(s.Seconds) * time.Second
	}
	if e := lc.PreStop.Exec; e != nil {
		for i, a := range e.Command {
			if path.Base(a) == "sleep" && i+1 < len(e.Command) {
				if d, ok := parseDur(e.Command[i+1]); ok {
					return d
				}
				if n, err := strconv.ParseFloat(e.Command[i+1], 64); err == nil {
					return time.Duration(n * float64(time.Second))
				}
			}
			// sh -c "sleep 5 && ..."
			if f := strings.Fields(a); len(f) >= 2 && f[0] == "sleep" {
				if n, err := strconv.ParseFloat(f[1], 64); err == nil {
					return time.Duration(n * float64(time.Second))
				}
			}
		}
	}
	return 0
}

func eachContainer(w *Workload, f func(i int, c *corev1.Container)) {
	for i := range w.Pod.Containers {
		f(i, &w.Pod.Containers[i])
	}
}

func checkGrace(_ *checker, w *Workload) []Finding {
	var out []Finding
	grace := w.grace()
	eachContainer(w, func(i int, c *corev1.Container) {
		pre, d := preStopTime(c), libraryEnv(c)
		need := pre
		what := ""
		switch {
		case d.hasShutdown && pre > 0:
			need += d.shutdown + Margin
			what = fmt.Sprintf("preStop %s + SHUTDOWN_TIMEOUT %s + margin %s = %s", pre, d.shutdown, Margin, need)
		case d.hasShutdown:
			need += d.shutdown + Margin
			what = fmt.Sprintf("SHUTDOWN_TIMEOUT %s + margin %s = %s", d.shutdown, Margin, need)
		case pre > 0:
			// The program's own shutdown, after the preStop hook,
			// needs time too: the margin at least.
			if pre < grace {
				return
			}
			need += Margin
			what = fmt.Sprintf("preStop %s (+ margin %s for the shutdown after it = %s)", pre, Margin, need)
		default:
			return
		}
		if need <= grace {
			return
		}
		p := append(append([]any(nil), w.podPath...), "terminationGracePeriodSeconds")
		fix := fmt.Sprintf("set terminationGracePeriodSeconds to at least %d", int((need+time.Second-1)/time.Second))
		if d.hasShutdown {
			fix += " or lower SHUTDOWN_TIMEOUT"
		}
		out = append(out, w.finding(c.Name, p, fieldPath(p),
			fmt.Sprintf("%s exceeds terminationGracePeriodSeconds %s: SIGKILL cuts the drain", what, grace), fix))
	})
	return out
}

// shellPrograms are what exec hooks and probes commonly run that a
// shell-less image lacks.
var shellPrograms = map[string]bool{"sh": true, "bash": true, "ash": true, "dash": true, "zsh": true,
	"kill": true, "sleep": true, "curl": true, "wget": true, "cat": true, "test": true, "pgrep": true}

// noShell reports an image known to have no shell: distroless (but its
// :debug tags, which carry busybox), scratch, and static images (Google's
// and Chainguard's static bases).
func noShell(image string) bool {
	repo, tag := image, ""
	if i := strings.LastIndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, tag = repo[:i], repo[i+1:]
	}
	if strings.Contains(repo, "distroless") {
		return !strings.HasPrefix(tag, "debug")
	}
	base := path.Base(repo)
	return base == "scratch" || base == "static" || strings.HasPrefix(base, "static-")
}

func checkExecProgram(_ *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, c *corev1.Container) {
		if !noShell(c.Image) {
			return
		}
		check := func(cmd []string, field ...any) {
			if len(cmd) == 0 || (len(c.Command) > 0 && c.Command[0] == cmd[0]) || !shellPrograms[path.Base(cmd[0])] {
				return
			}
			p := w.containerPath(false, i, field...)
			out = append(out, w.finding(c.Name, p, fieldPath(p),
				fmt.Sprintf("exec %q needs %s, which the image %s does not have (distroless, scratch and static images have no shell)", cmd, path.Base(cmd[0]), c.Image),
				"the image's own binary, an httpGet probe or lifecycle.preStop.sleep"))
		}
		if lc := c.Lifecycle; lc != nil && lc.PreStop != nil && lc.PreStop.Exec != nil {
			check(lc.PreStop.Exec.Command, "lifecycle", "preStop", "exec", "command")
		}
		for name, pr := range map[string]*corev1.Probe{"livenessProbe": c.LivenessProbe, "readinessProbe": c.ReadinessProbe, "startupProbe": c.StartupProbe} {
			if pr != nil && pr.Exec != nil {
				check(pr.Exec.Command, name, "exec", "command")
			}
		}
	})
	return out
}

func checkExecCost(_ *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, c *corev1.Container) {
		lp := c.LivenessProbe
		if lp == nil || lp.Exec == nil {
			return
		}
		period := lp.PeriodSeconds
		if period == 0 {
			period = 10
		}
		if period >= MinExecLivenessPeriod {
			return
		}
		p := w.containerPath(false, i, "livenessProbe", "periodSeconds")
		out = append(out, w.finding(c.Name, p, fieldPath(p),
			fmt.Sprintf("exec every %s costs the node about %d-%d ms of CPU a second per pod", seconds(period), 35/period, 66/period),
			fmt.Sprintf("periodSeconds %d or more (or an httpGet probe)", MinExecLivenessPeriod)))
	})
	return out
}

func checkWedge(_ *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, c *corev1.Container) {
		lp := c.LivenessProbe
		if lp == nil {
			return
		}
		period, failures := orDefault(lp.PeriodSeconds, 10), orDefault(lp.FailureThreshold, 3)
		grace, graceWhat := w.grace(), "the pod's terminationGracePeriodSeconds"
		if g := lp.TerminationGracePeriodSeconds; g != nil {
			grace, graceWhat = time.Duration(*g)*time.Second, "the probe's terminationGracePeriodSeconds"
		}
		d := libraryEnv(c)
		total := time.Duration(period*failures)*time.Second + grace
		what := fmt.Sprintf("periodSeconds %d x failureThreshold %d + %s %s", period, failures, graceWhat, grace)
		if d.hasMaxAge {
			total += d.maxAge
			what = fmt.Sprintf("LIVE_MAX_AGE %s + ", d.maxAge) + what
		}
		if total <= MaxWedge {
			return
		}
		p := w.containerPath(false, i, "livenessProbe")
		fix := "set livenessProbe.terminationGracePeriodSeconds (10 is plenty for a frozen process) and shorter periods"
		if lp.TerminationGracePeriodSeconds != nil {
			fix = "shorten periodSeconds x failureThreshold (or LIVE_MAX_AGE)"
		}
		out = append(out, w.finding(c.Name, p, fieldPath(p),
			fmt.Sprintf("a frozen process is killed up to %s after it froze (%s), over %s", total, what, MaxWedge), fix))
	})
	return out
}

func orDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
}

func checkRollout(c *checker, w *Workload) []Finding {
	if !c.servesTraffic(w) {
		return nil
	}
	switch {
	case w.DaemonSet != nil:
		return daemonSetRollout(w)
	case w.StatefulSet != nil:
		return statefulSetRollout(w)
	}
	d := w.Deployment
	if d == nil {
		return nil
	}
	if d.Spec.Strategy.Type == "Recreate" {
		p := []any{"spec", "strategy", "type"}
		return []Finding{w.finding("", p, fieldPath(p), "Recreate kills every pod before it starts new ones: requests are refused until one is ready",
			"type RollingUpdate with maxSurge 1, maxUnavailable 0")}
	}
	ru := d.Spec.Strategy.RollingUpdate
	def := intstr.FromString("25%")
	maxU, maxS := &def, &def
	if ru != nil {
		if ru.MaxUnavailable != nil {
			maxU = ru.MaxUnavailable
		}
		if ru.MaxSurge != nil {
			maxS = ru.MaxSurge
		}
	}
	unavailable, err1 := intstr.GetScaledValueFromIntOrPercent(maxU, w.Replicas, false)
	surge, err2 := intstr.GetScaledValueFromIntOrPercent(maxS, w.Replicas, true)
	if err1 != nil || err2 != nil || w.Replicas == 0 {
		return nil
	}
	// The Deployment controller takes at least one when both round to 0.
	if unavailable == 0 && surge == 0 {
		unavailable = 1
	}
	if unavailable < w.Replicas {
		return nil
	}
	p := []any{"spec", "strategy", "rollingUpdate", "maxUnavailable"}
	return []Finding{w.finding("", p, fieldPath(p),
		fmt.Sprintf("maxUnavailable %s (maxSurge %s) lets the rollout take all %d replicas at once", maxU.String(), maxS.String(), w.Replicas),
		"maxSurge 1, maxUnavailable 0")}
}

// daemonSetRollout: a DaemonSet's RollingUpdate replaces maxUnavailable
// of its pods at a time (default 1), across every node; at 100% every
// node's pod goes at once (maxSurge, when set, starts new ones first).
func daemonSetRollout(w *Workload) []Finding {
	ru := w.DaemonSet.Spec.UpdateStrategy.RollingUpdate
	if w.DaemonSet.Spec.UpdateStrategy.Type == appsv1.OnDeleteDaemonSetStrategyType || ru == nil || ru.MaxUnavailable == nil {
		return nil
	}
	if ru.MaxSurge != nil && ru.MaxSurge.String() != "0" && ru.MaxSurge.String() != "0%" {
		return nil
	}
	if u := ru.MaxUnavailable; u.Type != intstr.String || u.StrVal != "100%" {
		return nil
	}
	p := []any{"spec", "updateStrategy", "rollingUpdate", "maxUnavailable"}
	return []Finding{w.finding("", p, fieldPath(p), "maxUnavailable 100% replaces every node's pod at once: requests are refused until new ones are ready",
		"maxUnavailable 1 (the default), or maxSurge 1 with maxUnavailable 0")}
}

// statefulSetRollout: a StatefulSet cannot surge, so with one replica
// each update deletes the only pod before its replacement exists.
func statefulSetRollout(w *Workload) []Finding {
	ss := w.StatefulSet
	if ss.Spec.UpdateStrategy.Type == appsv1.OnDeleteStatefulSetStrategyType || w.Replicas != 1 {
		return nil
	}
	p := []any{"spec", "replicas"}
	return []Finding{w.finding("", p, fieldPath(p), "a StatefulSet of 1 replica cannot surge: each update deletes the only pod before its replacement runs, and its requests are refused meanwhile",
		"two or more replicas, or a Deployment (maxSurge 1, maxUnavailable 0) if the pods need no identity")}
}

// servesTraffic reports a Service that selects w's pods with a port other
// than a metrics one: a rollout that takes every pod refuses its requests.
// Pods no Service routes (a singleton controller, whose Recreate is
// deliberate), or only a metrics Service, lose a scrape at most.
func (c *checker) servesTraffic(w *Workload) bool {
	for _, s := range c.set.Services {
		if len(s.Obj.Spec.Selector) == 0 || !w.selectedBy(s.Meta.Namespace, selectorOf(s.Obj.Spec.Selector)) ||
			strings.HasSuffix(s.Meta.Name, "-metrics") {
			continue
		}
		for _, p := range s.Obj.Spec.Ports {
			if !strings.Contains(p.Name, "metrics") {
				return true
			}
		}
	}
	return false
}

// budget is a disruption budget that selects a workload, with its desired
// healthy count for the workload's replicas.
type budget struct {
	obj     *Object[policyv1.PodDisruptionBudget]
	desired int
}

// budgets returns the disruption budgets that select w.
func (c *checker) budgets(w *Workload) []budget {
	var out []budget
	for _, p := range c.set.PDBs {
		sel, err := metav1.LabelSelectorAsSelector(p.Obj.Spec.Selector)
		if err != nil || !w.selectedBy(p.Meta.Namespace, sel) {
			continue
		}
		if desired, err := DesiredHealthy(&p.Obj.Spec, w.Replicas); err == nil {
			out = append(out, budget{p, desired})
		}
	}
	return out
}

func checkPDBBlocks(c *checker, w *Workload) []Finding {
	if !w.serves() || w.Replicas == 0 {
		return nil
	}
	var out []Finding
	for _, b := range c.budgets(w) {
		if b.desired < w.Replicas {
			continue
		}
		if w.MaxReplicas > 0 {
			// An autoscaler owns the count: judge the budget at its
			// most; below that it blocks only while the load is low.
			if desired, err := DesiredHealthy(&b.obj.Obj.Spec, w.MaxReplicas); err != nil || desired < w.MaxReplicas {
				continue
			}
		}
		f := pdbFinding(b.obj, fmt.Sprintf("the budget wants %d healthy of %s's %s: no pod can ever be evicted, node drains hang", b.desired, w.Name(), replicas(w.Replicas)),
			"minAvailable below the replicas (and two or more replicas), or maxUnavailable 1")
		out = append(out, f)
	}
	return out
}

func checkPDBAllowsAll(c *checker, w *Workload) []Finding {
	if !w.serves() || w.Replicas < 2 {
		return nil
	}
	var out []Finding
	for _, b := range c.budgets(w) {
		if b.desired > 0 {
			continue
		}
		out = append(out, pdbFinding(b.obj, fmt.Sprintf("the budget lets a drain evict all %d replicas of %s at once", w.Replicas, w.Name()),
			"minAvailable 1, or maxUnavailable below the replicas"))
	}
	return out
}

func pdbFinding(p *Object[policyv1.PodDisruptionBudget], msg, fix string) Finding {
	field := "spec.minAvailable"
	if p.Obj.Spec.MaxUnavailable != nil {
		field = "spec.maxUnavailable"
	}
	return Finding{Object: objectName(p.Kind, p.Meta), Field: field, Message: msg, Fix: fix,
		File: p.src.file, Line: p.src.Line(strings.Split(field, ".")[0], strings.Split(field, ".")[1])}
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

// envPath is the path of the variable name's value in container i.
func envPath(w *Workload, i int, c *corev1.Container, name string) []any {
	for j, e := range c.Env {
		if e.Name == name {
			return w.containerPath(false, i, "env", j, "value")
		}
	}
	return w.containerPath(false, i, "env")
}

func replicas(n int) string {
	if n == 1 {
		return "1 replica"
	}
	return strconv.Itoa(n) + " replicas"
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

// containerPort resolves a probe's or a Service's port (a number, or a
// name) against a container's ports.
func containerPort(c *corev1.Container, port intstr.IntOrString) (int32, bool) {
	if port.Type == intstr.Int {
		return port.IntVal, true
	}
	for _, p := range c.Ports {
		if p.Name == port.StrVal {
			return p.ContainerPort, true
		}
	}
	return 0, false
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

func checkDrainDelay(c *checker, w *Workload) []Finding {
	var out []Finding
	eachContainer(w, func(i int, ct *corev1.Container) {
		d := libraryEnv(ct)
		rp := ct.ReadinessProbe
		if !d.hasDelay || rp == nil {
			return
		}
		period := time.Duration(orDefault(rp.PeriodSeconds, 10)) * time.Second
		pre := preStopTime(ct)
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
		if pre+d.delay >= need {
			return
		}
		p := envPath(w, i, ct, "DRAIN_DELAY")
		out = append(out, w.finding(ct.Name, p, fieldPath(w.containerPath(false, i, "env"))+"[DRAIN_DELAY]",
			fmt.Sprintf("DRAIN_DELAY %s does not cover %s = %s", d.delay, what, need),
			fmt.Sprintf("DRAIN_DELAY %s or more", need+2*time.Second)))
	})
	return out
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

// version facts: a field, the minor release from which it works without a
// feature gate (0: alpha, needs a gate), and what it is.
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

// serviceTargets checks each port of a Service against the pods it
// selects.
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

func declares(c *corev1.Container, port int32) bool {
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			return true
		}
	}
	return false
}
