package vet

import (
	"fmt"
	"path"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
)

// MaxWedge is how long a frozen process may keep its pod before the kubelet
// has killed it. It is the default of Options.MaxWedge.
const MaxWedge = time.Minute

// MinExecLivenessPeriod is the shortest periodSeconds the rules accept for
// an exec liveness probe. Each run costs the node about 35-66 ms of CPU for
// the runtime's exec. An httpGet probe costs about nothing.
const MinExecLivenessPeriod = 10

var ruleExecNeedsProgram = Rule{
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
}

// shellPrograms are the programs exec hooks and probes commonly run that a
// shell-less image lacks.
var shellPrograms = map[string]bool{"sh": true, "bash": true, "ash": true, "dash": true, "zsh": true,
	"kill": true, "sleep": true, "curl": true, "wget": true, "cat": true, "test": true, "pgrep": true}

// noShell reports an image known to have no shell. These are distroless,
// scratch and static images (Google's and Chainguard's static bases).
// Distroless :debug tags carry busybox and are not counted.
func noShell(image string) bool {
	repo, tag := imageRepo(image)
	if strings.Contains(repo, "distroless") {
		return !strings.HasPrefix(tag, "debug")
	}
	base := path.Base(repo)
	return base == "scratch" || base == "static" || strings.HasPrefix(base, "static-")
}

// imageRepo splits an image reference into its repository and tag, with
// no digest.
func imageRepo(image string) (repo, tag string) {
	repo = image
	if i := strings.LastIndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo, tag = repo[:i], repo[i+1:]
	}
	return repo, tag
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

var ruleExecLivenessCost = Rule{
	Name: "exec-liveness-cost", Severity: Warning,
	Summary: "an exec liveness probe runs more often than every 10 s",
	Explain: `Each exec probe makes the container runtime create a process in the
container: about 35-66 ms of node CPU per run, measured on a real kubelet with
containerd (an httpGet or tcpSocket probe costs about nothing). Every second that
is 3-7% of a core per pod. Keep exec liveness probes at periodSeconds 10 or more,
and readiness probes on httpGet.`,
	check: checkExecCost,
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

var ruleWedgeRestart = Rule{
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
}

func checkWedge(ck *checker, w *Workload) []Finding {
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
		if total <= ck.opts.MaxWedge {
			return
		}
		p := w.containerPath(false, i, "livenessProbe")
		fix := "set livenessProbe.terminationGracePeriodSeconds (10 is plenty for a frozen process) and shorter periods"
		if lp.TerminationGracePeriodSeconds != nil {
			fix = "shorten periodSeconds x failureThreshold (or LIVE_MAX_AGE)"
		}
		out = append(out, w.finding(c.Name, p, fieldPath(p),
			fmt.Sprintf("a frozen process is killed up to %s after it froze (%s), over %s", total, what, ck.opts.MaxWedge), fix))
	})
	return out
}

var ruleProbesSame = Rule{
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
}

// readinessEndpoint reports whether a liveness probe asks an endpoint named
// for readiness (/ready, /readyz, /health/ready...) on the path and port
// the readiness probe asks too. By its name such an endpoint answers for
// the dependencies. A shared /healthz or grpc health service says nothing
// of what it checks. On eight public projects none checked a dependency,
// and a rule on any shared handler made 11 findings, all wrong.
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
