package manifest

import (
	"errors"
	"fmt"
	"net"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/drainwell/drainwell/cmd/drainwell/vet"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

// App is what the code and the image say about the app, against which its
// Deployment is checked.
type App struct {
	Container  string   // the container's name
	Entrypoint []string // the image's ENTRYPOINT
	Live       string   // the subcommand of the exec liveness probe
	Routes     []string // the paths the app serves
	Env        []string // variables that must be set explicitly
	// MinLivenessPeriod keeps the exec probe's cost low.
	MinLivenessPeriod int32
	// MaxWedge bounds the time from a process freezing to the kubelet
	// killing it. drainwell vet's wedge-restart rule computes that time,
	// with this bound instead of its default.
	MaxWedge time.Duration
}

// CheckApp checks the app's Deployment d against the app, and the Services
// of set against d. It checks what the code and the image say: routes,
// ports, variables set explicitly, the marker's volume, the project's own
// wedge promise and security. It returns every problem found, each one
// line. The timing relations every service shares (grace period, preStop,
// DRAIN_DELAY, readiness policy, rollout, budgets) are drainwell vet's
// rules (github.com/drainwell/drainwell/cmd/drainwell/vet). The project
// checks deploy/ with both. Where a check here is one of vet's rules (the
// wedge time, Service target ports), CheckApp runs vet's checker on d and
// reports its findings.
func CheckApp(d *appsv1.Deployment, set *Set, app App) []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	findings, err := vetFindings(d, set, app)
	if err != nil {
		bad("drainwell vet cannot read the objects: %v", err)
	}

	if d.Spec.Strategy.Type != appsv1.RollingUpdateDeploymentStrategyType {
		bad("strategy.type is %q, want RollingUpdate", d.Spec.Strategy.Type)
	} else if ru := d.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.String() != "0" {
		bad("strategy.rollingUpdate.maxUnavailable must be 0: a new pod must be ready before an old one goes")
	}
	c := Container(d, app.Container)
	if c == nil {
		bad("no container named %q", app.Container)
		return errs
	}
	pod := &d.Spec.Template.Spec
	env := Env(c)
	for _, k := range app.Env {
		if _, ok := env[k]; !ok {
			bad("env %s is not set explicitly", k)
		}
	}
	// The app's ports, from ADDR, GRPC_ADDR and ADMIN_ADDR.
	port := func(key string) int32 {
		addr, ok := env[key]
		if !ok {
			return -1
		}
		_, p, err := net.SplitHostPort(addr)
		n, perr := strconv.Atoi(p)
		if err != nil || perr != nil || n < 0 || n > 65535 {
			bad("env %s=%q is not HOST:PORT", key, addr)
			return -1
		}
		return int32(n) // #nosec G109 G115 -- bounded to 0-65535 above
	}
	appPort, grpcPort, adminPort := port("ADDR"), port("GRPC_ADDR"), port("ADMIN_ADDR")

	// Readiness: httpGet on a route and the port the app serves it on:
	// the admin listener's when there is one (it answers to the end).
	probePort, probeVar := appPort, "the app's port %d (ADDR)"
	if adminPort >= 0 {
		probePort, probeVar = adminPort, "the admin port %d (ADMIN_ADDR)"
	}
	switch rp := c.ReadinessProbe; {
	case rp == nil:
		bad("no readinessProbe")
	case rp.HTTPGet == nil:
		bad("readinessProbe is not httpGet (exec costs node CPU on every run)")
	default:
		if !slices.Contains(app.Routes, rp.HTTPGet.Path) {
			bad("readinessProbe path %q is not a route the app serves (%s)", rp.HTTPGet.Path, strings.Join(app.Routes, ", "))
		}
		if p, err := PortNumber(c, rp.HTTPGet.Port.StrVal, rp.HTTPGet.Port.IntVal); err != nil {
			bad("readinessProbe port: %v", err)
		} else if p != probePort {
			bad("readinessProbe port %d is not "+probeVar, p, probePort)
		}
	}
	for _, p := range c.Ports {
		if p.ContainerPort != appPort && p.ContainerPort != grpcPort && p.ContainerPort != adminPort {
			bad("containerPort %d (%s) is none of the app's ports (ADDR %d, GRPC_ADDR %d, ADMIN_ADDR %d)", p.ContainerPort, p.Name, appPort, grpcPort, adminPort)
		}
	}

	// Liveness: the image's binary with its live subcommand, no shell.
	wantLive := append(slices.Clone(app.Entrypoint), app.Live)
	switch lp := c.LivenessProbe; {
	case lp == nil:
		bad("no livenessProbe")
	case lp.Exec == nil:
		bad("livenessProbe is not exec %q", wantLive)
	default:
		if !slices.Equal(lp.Exec.Command, wantLive) {
			bad("livenessProbe exec %q is not %q: the image has no shell, no cat", lp.Exec.Command, wantLive)
		}
		if lp.TimeoutSeconds == 0 {
			bad("livenessProbe.timeoutSeconds is not set")
		}
		if lp.PeriodSeconds < app.MinLivenessPeriod {
			bad("livenessProbe.periodSeconds %d is below %d: each exec costs node CPU", lp.PeriodSeconds, app.MinLivenessPeriod)
		}
	}
	errs = append(errs, checkWedge(pod, c, env, app.MaxWedge, findings)...)

	// Lifecycle hooks: no program but the image's own. (The timings of
	// the grace period, the preStop hook, DRAIN_DELAY and the readiness
	// policy are drainwell vet's rules: CheckApp's caller runs them.)
	if lc := c.Lifecycle; lc != nil && lc.PreStop != nil && lc.PreStop.Exec != nil {
		if cmd := lc.PreStop.Exec.Command; len(cmd) == 0 || cmd[0] != app.Entrypoint[0] {
			bad("preStop exec %q needs a program the distroless image lacks; use the sleep action", cmd)
		}
	}

	// The marker on a writable mounted emptyDir.
	if lf, ok := env["LIVE_FILE"]; ok {
		if !onWritableEmptyDir(pod, c, path.Dir(lf)) {
			bad("LIVE_FILE %s is not on a writable emptyDir volume mount (the root filesystem is read-only)", lf)
		}
	}

	errs = append(errs, checkSecurity(pod, c)...)
	errs = append(errs, checkResources(c)...)
	errs = append(errs, checkServices(d, set, env, findings)...)
	return errs
}

// vetFindings runs drainwell vet's rules on d and the Services that select
// its pods, with the app's wedge bound. The objects are given to vet as
// YAML, without their ignore annotations: a rule the project holds itself
// to is not turned off by one.
func vetFindings(d *appsv1.Deployment, set *Set, app App) ([]vet.Finding, error) {
	dc := d.DeepCopy()
	dc.APIVersion, dc.Kind = "apps/v1", "Deployment"
	dropIgnores(&dc.ObjectMeta)
	objs := []any{dc}
	for _, s := range selecting(d, set) {
		sc := s.DeepCopy()
		sc.APIVersion, sc.Kind = "v1", "Service"
		dropIgnores(&sc.ObjectMeta)
		objs = append(objs, sc)
	}
	var docs []byte
	for _, o := range objs {
		b, err := yaml.Marshal(o)
		if err != nil {
			return nil, err
		}
		docs = append(append(docs, "---\n"...), b...)
	}
	vs := &vet.Set{}
	if err := vs.Add("CheckApp", docs); err != nil {
		return nil, err
	}
	return vet.Check(vs, vet.Options{MaxWedge: app.MaxWedge}), nil
}

func dropIgnores(m *metav1.ObjectMeta) {
	for k := range m.Annotations {
		if strings.HasPrefix(k, vet.IgnoreAnnotation) {
			delete(m.Annotations, k)
		}
	}
}

// selecting returns the Services of set that select d's pods.
func selecting(d *appsv1.Deployment, set *Set) []*corev1.Service {
	var out []*corev1.Service
	for _, s := range set.Services {
		if len(s.Spec.Selector) > 0 && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			out = append(out, s)
		}
	}
	return out
}

// checkWedge holds the app to its wedge promise. A frozen process is found
// by its marker going stale after LIVE_MAX_AGE. Then the liveness probe
// fails failureThreshold times, a period apart. Then the kill waits the
// probe-level grace, since a frozen process never acts on SIGTERM and the
// pod's drain grace would be wasted. vet's wedge-restart rule adds these
// up against limit, and its findings for c are reported here. The rest
// are the app's own demands: a marker that goes stale, a probe-level grace
// below the pod's, and probes no more often than the heartbeat.
func checkWedge(pod *corev1.PodSpec, c *corev1.Container, env map[string]string, limit time.Duration, findings []vet.Finding) []error {
	lp := c.LivenessProbe
	if lp == nil || limit == 0 {
		return nil
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	maxAge, err := time.ParseDuration(env["LIVE_MAX_AGE"])
	if err != nil || maxAge <= 0 {
		bad("LIVE_MAX_AGE %q: a marker that never goes stale never restarts a wedged process", env["LIVE_MAX_AGE"])
		return errs
	}
	podGrace := int64(30)
	if pod.TerminationGracePeriodSeconds != nil {
		podGrace = *pod.TerminationGracePeriodSeconds
	}
	switch g := lp.TerminationGracePeriodSeconds; {
	case g == nil:
		bad("livenessProbe.terminationGracePeriodSeconds is not set: a liveness kill waits the pod's %ds for a process that cannot drain", podGrace)
	case *g >= podGrace:
		bad("livenessProbe.terminationGracePeriodSeconds %d is not below the pod's %d", *g, podGrace)
	}
	period := lp.PeriodSeconds
	if period == 0 {
		period = 10 // the API's default
	}
	if hb := maxAge / 3; time.Duration(period)*time.Second < hb {
		bad("livenessProbe.periodSeconds %d is below the heartbeat interval %s (LIVE_MAX_AGE / 3)", period, hb)
	}
	for _, f := range findings {
		if f.Rule == "wedge-restart" && f.Container == c.Name {
			bad("%s", f.Message)
		}
	}
	return errs
}

func onWritableEmptyDir(pod *corev1.PodSpec, c *corev1.Container, dir string) bool {
	for _, m := range c.VolumeMounts {
		if m.ReadOnly || (dir != m.MountPath && !strings.HasPrefix(dir, strings.TrimSuffix(m.MountPath, "/")+"/")) {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name == m.Name && v.EmptyDir != nil {
				return true
			}
		}
	}
	return false
}

func checkSecurity(pod *corev1.PodSpec, c *corev1.Container) []error {
	var errs []error
	bad := func(s string) { errs = append(errs, errors.New(s)) }
	psc, sc := pod.SecurityContext, c.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		sc = &corev1.SecurityContext{}
	}
	isTrue := func(b *bool) bool { return b != nil && *b }
	if !isTrue(sc.RunAsNonRoot) && !isTrue(psc.RunAsNonRoot) {
		bad("runAsNonRoot is not set")
	}
	if !isTrue(sc.ReadOnlyRootFilesystem) {
		bad("readOnlyRootFilesystem is not set")
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		bad("allowPrivilegeEscalation is not false")
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		bad("capabilities do not drop ALL")
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		bad("seccompProfile is not RuntimeDefault")
	}
	return errs
}

func checkResources(c *corev1.Container) []error {
	var errs []error
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		if _, ok := c.Resources.Requests[r]; !ok {
			errs = append(errs, fmt.Errorf("resources.requests.%s is not set", r))
		}
		if _, ok := c.Resources.Limits[r]; !ok {
			errs = append(errs, fmt.Errorf("resources.limits.%s is not set", r))
		}
	}
	return errs
}

// checkServices checks that a Service selects the app's pods, and that
// REDIS_ADDR names a Service that selects some Deployment's pods. A
// Service's targetPort that names no port of the pods is vet's
// service-target-port rule, and its findings are reported here.
func checkServices(d *appsv1.Deployment, set *Set, env map[string]string, findings []vet.Finding) []error {
	var errs []error
	if len(selecting(d, set)) == 0 {
		errs = append(errs, fmt.Errorf("no Service selects the pods of %s (labels %v)", d.Name, labels.Set(d.Spec.Template.Labels)))
	}
	for _, f := range findings {
		if f.Rule == "service-target-port" {
			errs = append(errs, fmt.Errorf("service %s targetPort: %s", f.Object[strings.LastIndexByte(f.Object, '/')+1:], f.Message))
		}
	}
	if ra, ok := env["REDIS_ADDR"]; ok && ra != "" {
		errs = append(errs, checkServiceAddr(set, "REDIS_ADDR", ra)...)
	}
	return errs
}

func checkServiceAddr(set *Set, key, addr string) []error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []error{fmt.Errorf("env %s=%q is not HOST:PORT", key, addr)}
	}
	name, _, _ := strings.Cut(host, ".") // redis, redis.ns, redis.ns.svc...
	s := set.Service(name)
	if s == nil {
		return []error{fmt.Errorf("env %s host %q is not a Service of the kustomization", key, host)}
	}
	var errs []error
	if !slices.ContainsFunc(s.Spec.Ports, func(p corev1.ServicePort) bool { return strconv.Itoa(int(p.Port)) == port }) {
		errs = append(errs, fmt.Errorf("env %s port %s is not a port of Service %s", key, port, name))
	}
	selected := false
	for _, d := range set.Deployments {
		if labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
			selected = true
		}
	}
	if !selected {
		errs = append(errs, fmt.Errorf("Service %s selects no Deployment's pods", name))
	}
	return errs
}
