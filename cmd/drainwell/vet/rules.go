package vet

import (
	"path"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// rules are the rules Check runs on each workload, in this order. Each
// family's rules are in its own file.
var rules = []Rule{
	ruleGracePeriod,
	ruleExecNeedsProgram,
	ruleExecLivenessCost,
	ruleWedgeRestart,
	ruleRolloutAllAtOnce,
	rulePDBBlocksEviction,
	rulePDBAllowsAll,
	ruleReadinessAtSignal,
	ruleReadinessSingleFailure,
	ruleReadinessMissing,
	ruleGraceShort,
	ruleProbesSame,
	ruleReadinessPortNotRouted,
	ruleDrainDelayShort,
	rulePreStopAndDrainDelay,
	ruleStopSignal,
	ruleSidecarGrace,
	ruleKubeVersion,
	ruleWebhookSingleReplica,
	ruleWebhookPDBMissing,
	ruleWebhookNoDelay,
}

// pkg/health's defaults. A variable set to 0 takes them too (healthenv).
const (
	defaultDrainDelay      = 5 * time.Second
	defaultShutdownTimeout = 25 * time.Second
)

// routedContainers returns, in order, the indexes of w's containers that
// take a Service's traffic. The Service selects the pods, and its port
// targets a port the container declares, by name or number. A headless
// Service is left out, since it is for discovery (as Prometheus uses it).
// Metrics are left out too: a Service named *-metrics, and a port whose
// name contains "metrics". A scrape reaches pods whether ready or not.
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
			for i := range w.Pod.Containers {
				if reaches(sp, &w.Pod.Containers[i]) {
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

// servesTraffic reports whether a Service selects w's pods with a port
// that is not for metrics. A Service named *-metrics and a port whose name
// contains "metrics" do not count. A rollout that takes every pod of such
// a workload refuses its requests. Pods that only a metrics Service
// selects lose a scrape at most. Often they are a singleton controller,
// whose Recreate is deliberate.
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

// reaches reports whether a Service port routes to a port container c
// declares. Its targetPort, by default the port itself, is a number or the
// name of a containerPort.
func reaches(sp corev1.ServicePort, c *corev1.Container) bool {
	target := sp.TargetPort
	if target.Type == intstr.Int && target.IntVal == 0 {
		target = intstr.FromInt32(sp.Port)
	}
	n, ok := containerPort(c, target)
	return ok && declares(c, n)
}

// containerPort resolves a probe's or a Service's port against a
// container's ports. The port is a number, or the name of a containerPort.
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

func declares(c *corev1.Container, port int32) bool {
	for _, p := range c.Ports {
		if p.ContainerPort == port {
			return true
		}
	}
	return false
}

func selectorOf(m map[string]string) labels.Selector { return labels.SelectorFromSet(labels.Set(m)) }

// drainEnv is the library's environment in a container.
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
		// The service is configured in code, or by the env below.
		// Where the env is silent, the library's defaults hold.
		d.shutdown, d.hasShutdown = defaultShutdownTimeout, true
		d.delay, d.hasDelay = defaultDrainDelay, true
	}
	// They are read as healthenv reads them. 0 takes the default, and
	// DRAIN_DELAY=none is no delay.
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

// embedsLibrary reports whether a container's liveness probe is the
// library's `live` subcommand, exec [BIN, "live"] as the README embeds it.
// Such a service is drained by pkg/health, whatever its env says. The
// standalone probe binary is not counted.
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

// preStopTime is how long a container's preStop hook takes, or 0 when it
// cannot tell. It reads a sleep action and an exec that runs sleep, such
// as `sleep N`, `probe sleep 5s` or `sh -c "sleep 5 && ..."`.
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

// servingDelay is how long container c keeps accepting after its pod is
// deleted: its preStop hook's sleep, then the library's DRAIN_DELAY or the
// delay of a program known to wait by itself. timed is false for a preStop
// hook vet cannot time (an httpGet, an exec that is not a sleep): such a
// hook may wait, and is given the benefit of the doubt.
func servingDelay(c *corev1.Container) (d time.Duration, timed bool) {
	d = preStopTime(c) + libraryEnv(c).delay + programDelay(c)
	lc := c.Lifecycle
	timed = lc == nil || lc.PreStop == nil || lc.PreStop.Sleep != nil || preStopTime(c) > 0
	return d, timed
}

// gatekeeperDelay is how long Gatekeeper's manager waits after SIGTERM
// before it stops its webhook server, unless --shutdown-delay says
// otherwise (its main.go, after controller-runtime issue 3113).
const gatekeeperDelay = 10 * time.Second

// programDelay is the delay at SIGTERM of a program known to keep serving
// by itself, read from its image and flags: Gatekeeper's manager. Other
// programs are unknown here, and 0.
func programDelay(c *corev1.Container) time.Duration {
	if repo, _ := imageRepo(c.Image); path.Base(repo) != "gatekeeper" || !strings.Contains(repo, "openpolicyagent/") {
		return 0
	}
	d := gatekeeperDelay
	args := append(append([]string(nil), c.Command...), c.Args...)
	for i, a := range args {
		name, v, hasValue := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != "shutdown-delay" {
			continue
		}
		if !hasValue && i+1 < len(args) {
			v = args[i+1]
		}
		if n, err := strconv.Atoi(v); err == nil {
			d = time.Duration(n) * time.Second
		}
	}
	return d
}

func eachContainer(w *Workload, f func(i int, c *corev1.Container)) {
	for i := range w.Pod.Containers {
		f(i, &w.Pod.Containers[i])
	}
}

func orDefault(v, def int32) int32 {
	if v == 0 {
		return def
	}
	return v
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
