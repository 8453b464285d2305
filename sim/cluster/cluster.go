package cluster

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/drainwell/drainwell/e2e/harness"
)

// Phase is where a pod is, for the timeline.
type Phase string

// The phases a pod goes through.
const (
	Starting    Phase = "starting"
	Ready       Phase = "ready"
	NotReady    Phase = "not ready"
	Terminating Phase = "terminating"
	Frozen      Phase = "frozen"
	Restarting  Phase = "restarting"
	Exited      Phase = "exited"
)

// Event is a pod entering a phase.
type Event struct {
	At    time.Time
	Pod   string
	Phase Phase
	Note  string
}

// Config is a cluster to run.
type Config struct {
	Spec Spec
	// Bin is the image's binary: the container's process and the exec
	// probe's argv[0].
	Bin string
	// Args are the container's arguments.
	Args []string
	// Env overrides the Spec's environment.
	Env map[string]string
	// Dir holds the pods' emptyDir volumes.
	Dir string
	// Net is the first three octets of the pods' loopback addresses,
	// e.g. "127.0.1": pods are 127.0.1.2, .3, ... and the Service is .1.
	Net string
	// Lag is how long an endpoint change takes to reach the Service proxy.
	Lag time.Duration
	// ServicePorts names the container ports the Service exposes, each
	// through a proxy of its own. Default: "http" (Spec.Port).
	ServicePorts []string
	// StartDelay is how long a pod created after Start waits before its
	// container runs: scheduling, the sandbox, the container's creation.
	StartDelay time.Duration
}

// Cluster is one Deployment and its Service.
type Cluster struct {
	cfg     Config
	proxy   *proxy            // the "http" port's
	proxies map[string]*proxy // by port name
	start   time.Time

	mu       sync.Mutex
	pods     []*Pod
	revision int
	nextIP   int
	events   []Event
	notes    []Event // what explains a verdict: failed probes, views applied
}

// Pod is one replica.
type Pod struct {
	Name     string
	Revision int
	IP       string
	Addr     string // IP:port of the "http" port
	c        *Cluster
	dir      string // the emptyDir of LIVE_FILE

	ready       atomic.Bool
	terminating atomic.Bool
	restarts    atomic.Int32
	proc        atomic.Pointer[harness.Proc]
	terminate   chan struct{} // closed to delete the pod
	gone        chan struct{} // closed when its last container exited
}

// Start starts the Service proxy and Spec.Replicas pods, and waits until
// all are ready.
func Start(ctx context.Context, cfg Config) (*Cluster, error) {
	c := &Cluster{cfg: cfg, start: time.Now(), nextIP: 2, proxies: map[string]*proxy{}}
	if len(cfg.ServicePorts) == 0 {
		cfg.ServicePorts = []string{"http"}
		c.cfg.ServicePorts = cfg.ServicePorts
	}
	for _, name := range cfg.ServicePorts {
		if name != "http" && cfg.Spec.Ports[name] == 0 {
			c.closeProxies()
			return nil, fmt.Errorf("the container has no port %q", name)
		}
		p, err := newProxy(cfg.Net+".1:0", cfg.Lag, func(eps endpoints) {
			c.note("service "+name, fmt.Sprintf("view: ready %v, serving terminating %v", eps.ready, eps.servingTerminating))
		}, func(err error) {
			c.note("service "+name, "refused: "+err.Error())
		})
		if err != nil {
			c.closeProxies()
			return nil, err
		}
		c.proxies[name] = p
	}
	c.proxy = c.proxies["http"]
	if c.proxy == nil {
		c.proxy = c.proxies[cfg.ServicePorts[0]]
	}
	c.revision = 1
	for range cfg.Spec.Replicas {
		if _, err := c.createPod(1, 0); err != nil {
			return nil, err
		}
	}
	// Ready, and routed: the Service's view lags the endpoints.
	err := waitUntil(ctx, 20*time.Millisecond, func() bool { return c.proxy.viewSize() == cfg.Spec.Replicas })
	return c, err
}

// ServiceAddr is the address of the Service's "http" port.
func (c *Cluster) ServiceAddr() string { return c.proxy.addr() }

// ServiceAddrOf is the address of the Service's port name.
func (c *Cluster) ServiceAddrOf(name string) string { return c.proxies[name].addr() }

// Refused is how many connections the Service could not route, over all
// its ports.
func (c *Cluster) Refused() int64 {
	var n int64
	for _, p := range c.proxies {
		n += p.refused.Load()
	}
	return n
}

func (c *Cluster) closeProxies() {
	for _, p := range c.proxies {
		p.close()
	}
}

// portAddr is the pod's address for the container port name.
func (c *Cluster) portAddr(p *Pod, name string) string {
	port := c.cfg.Spec.Port
	if name != "http" {
		port = c.cfg.Spec.Ports[name]
	}
	return net.JoinHostPort(p.IP, strconv.Itoa(port))
}

// Pods returns the pods that exist now (terminating ones included).
func (c *Cluster) Pods() []*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*Pod, 0, len(c.pods))
	for _, p := range c.pods {
		select {
		case <-p.gone:
		default:
			out = append(out, p)
		}
	}
	return out
}

// AllPods returns every pod the cluster ever had.
func (c *Cluster) AllPods() []*Pod {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]*Pod(nil), c.pods...)
}

// ConnsTo is how many connections the Service sent to pod.
func (c *Cluster) ConnsTo(pod *Pod) int64 {
	if n, ok := c.proxy.byTarget.Load(pod.Addr); ok {
		return n.(*atomic.Int64).Load()
	}
	return 0
}

// OKsBetween counts the 2xx responses pod sent through the Service in
// [from, to].
func (c *Cluster) OKsBetween(pod *Pod, from, to time.Time) int {
	return c.proxy.oksBetween(pod.Addr, from, to)
}

// Notes returns what happened beside the phases, to explain a verdict:
// each failed readiness probe and why, a terminating pod's serving
// condition changing, and each view a Service proxy applied.
func (c *Cluster) Notes() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.notes...)
}

func (c *Cluster) note(pod, what string) {
	c.mu.Lock()
	c.notes = append(c.notes, Event{At: time.Now(), Pod: pod, Note: what})
	c.mu.Unlock()
}

// Events returns the timeline so far.
func (c *Cluster) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

func (c *Cluster) event(p *Pod, ph Phase, note string) {
	c.mu.Lock()
	c.events = append(c.events, Event{At: time.Now(), Pod: p.Name, Phase: ph, Note: note})
	c.mu.Unlock()
}

// endpointsChanged publishes every port's EndpointSlice to its proxy, with
// the conditions the EndpointSlice controller sets (podToEndpoint in
// k8s.io/endpointslice's utils.go, KEP-1672): serving is the pod's Ready
// condition, which the readiness probe keeps driving during termination;
// terminating is a deletion timestamp; ready is serving and not
// terminating ("ready should never be true if a pod is terminating"),
// whatever the probe says.
func (c *Cluster) endpointsChanged() {
	for name, px := range c.proxies {
		var pods []podEndpoint
		for _, p := range c.Pods() {
			pods = append(pods, podEndpoint{addr: c.portAddr(p, name), serving: p.ready.Load(), terminating: p.terminating.Load()})
		}
		px.publish(endpointsOf(pods))
	}
}

// podEndpoint is what the EndpointSlice controller reads of a pod for one
// port: its address, its Ready condition (serving) and whether it has a
// deletion timestamp (terminating).
type podEndpoint struct {
	addr                 string
	serving, terminating bool
}

// endpointsOf is the EndpointSlice of pods as kube-proxy reads it. A pod
// serving and not terminating is ready. A pod serving and terminating is
// in the fallback set. A pod not serving is in neither. Both lists are
// sorted.
func endpointsOf(pods []podEndpoint) endpoints {
	var eps endpoints
	for _, p := range pods {
		switch {
		case p.serving && !p.terminating:
			eps.ready = append(eps.ready, p.addr)
		case p.serving && p.terminating:
			eps.servingTerminating = append(eps.servingTerminating, p.addr)
		}
	}
	sort.Strings(eps.ready)
	sort.Strings(eps.servingTerminating)
	return eps
}

func (c *Cluster) env(p *Pod) []string {
	env := map[string]string{}
	for k, v := range c.cfg.Spec.Env {
		env[k] = v
	}
	for k, v := range c.cfg.Env {
		env[k] = v
	}
	env["ADDR"] = p.Addr
	// Every other listen address on the pod's own IP, as a pod's network
	// namespace would make ":9090" mean.
	for k, v := range env {
		if (k == "GRPC_ADDR" || k == "ADMIN_ADDR") && strings.HasPrefix(v, ":") {
			env[k] = p.IP + v
		}
	}
	if lf, ok := env["LIVE_FILE"]; ok {
		env["LIVE_FILE"] = filepath.Join(p.dir, path.Base(lf))
	}
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

func (c *Cluster) createPod(rev int, startDelay time.Duration) (*Pod, error) {
	c.mu.Lock()
	ip := c.nextIP
	c.nextIP++
	c.mu.Unlock()
	if ip > 254 {
		return nil, errors.New("out of pod addresses")
	}
	p := &Pod{
		Name:      fmt.Sprintf("app-r%d-%d", rev, ip),
		Revision:  rev,
		IP:        c.cfg.Net + "." + strconv.Itoa(ip),
		Addr:      net.JoinHostPort(c.cfg.Net+"."+strconv.Itoa(ip), strconv.Itoa(c.cfg.Spec.Port)),
		c:         c,
		dir:       filepath.Join(c.cfg.Dir, "pod-"+strconv.Itoa(ip)),
		terminate: make(chan struct{}),
		gone:      make(chan struct{}),
	}
	if err := os.MkdirAll(p.dir, 0o755); err != nil {
		return nil, err
	}
	c.mu.Lock()
	c.pods = append(c.pods, p)
	c.mu.Unlock()
	go p.run(startDelay)
	return p, nil
}

// run is the pod's kubelet: it starts the container, probes it, restarts it
// when liveness fails, and terminates it when the pod is deleted.
func (p *Pod) run(startDelay time.Duration) {
	defer close(p.gone)
	spec := p.c.cfg.Spec
	// The kubelet's prober worker starts with the pod and probes on its
	// ticker, from the first tick at which the container has run for
	// initialDelaySeconds (doProbe skips a container not yet running).
	anchor := time.Now()
	if startDelay > 0 {
		select {
		case <-time.After(startDelay):
		case <-p.terminate:
			p.c.event(p, Exited, "deleted before it started")
			return
		}
	}
	for {
		p.c.event(p, Starting, "")
		proc, err := harness.Launch(p.c.cfg.Bin, p.c.env(p), p.c.cfg.Args...)
		if err != nil {
			p.c.event(p, Exited, err.Error())
			return
		}
		p.proc.Store(proc)
		probes, stopProbes := context.WithCancel(context.Background())
		livenessFailed := make(chan struct{})
		go p.readiness(probes, firstTick(anchor, time.Now(), spec.Readiness))
		anchor = time.Now() // a restarted container's worker starts anew
		if len(spec.Liveness.Exec) > 0 {
			go p.liveness(probes, livenessFailed)
		}
		select {
		case <-p.terminate:
			// Endpoint removal (by the caller) runs concurrently with
			// preStop and SIGTERM.
			p.c.event(p, Terminating, "")
			grace := spec.Grace
			if d := spec.PreStopSleep; d > 0 {
				select {
				case <-time.After(d):
				case <-proc.Done():
				}
				grace -= d
			}
			code, killed := p.stop(proc, grace)
			stopProbes()
			p.setReady(false)
			note := "exit " + strconv.Itoa(code)
			if killed {
				note += ", killed at the end of its grace period"
			}
			p.c.event(p, Exited, note)
			return
		case <-livenessFailed:
			p.restarts.Add(1)
			p.c.event(p, Restarting, "liveness probe failed")
			grace := spec.Grace
			if spec.Liveness.Grace > 0 {
				grace = spec.Liveness.Grace
			}
			p.stop(proc, grace)
			stopProbes()
			p.setReady(false)
		case <-proc.Done():
			stopProbes()
			p.setReady(false)
			code, _ := proc.Wait(0)
			p.restarts.Add(1)
			p.c.event(p, Restarting, "container exited "+strconv.Itoa(code))
		}
	}
}

// stop sends SIGTERM, and SIGKILL after grace; it returns the exit status
// (-1 for a signal) and whether it had to kill.
func (p *Pod) stop(proc *harness.Proc, grace time.Duration) (code int, killed bool) {
	proc.Signal(syscall.SIGTERM)
	select {
	case <-proc.Done():
	case <-time.After(grace):
		proc.Cmd.Process.Signal(syscall.SIGKILL)
		killed = true
		<-proc.Done()
	}
	code, _ = proc.Wait(0)
	return code, killed
}

func (p *Pod) setReady(r bool) {
	if p.ready.Swap(r) != r {
		ph := NotReady
		if r {
			ph = Ready
		}
		if !p.terminating.Load() { // a terminating pod stays "terminating" until it exits
			p.c.event(p, ph, "")
		} else {
			p.c.note(p.Name, "serving="+strconv.FormatBool(r))
		}
		p.c.endpointsChanged()
	}
}

// readiness runs the httpGet readiness probe with its thresholds.
func (p *Pod) readiness(ctx context.Context, first time.Duration) {
	pr := p.c.cfg.Spec.Readiness
	client := &http.Client{Timeout: pr.Timeout, Transport: &http.Transport{DisableKeepAlives: true}}
	url := "http://" + net.JoinHostPort(p.IP, strconv.Itoa(p.c.cfg.Spec.ProbePort)) + pr.HTTPPath
	ok, fail := 0, 0
	tick(ctx, first, pr.Period, func() {
		resp, err := client.Get(url)
		good := err == nil && resp.StatusCode >= 200 && resp.StatusCode < 400
		if err == nil {
			resp.Body.Close()
		}
		if !good {
			var why string
			if err != nil {
				why = err.Error()
			} else {
				why = resp.Status
			}
			p.c.note(p.Name, "readiness probe failed: "+why)
		}
		if good {
			ok, fail = ok+1, 0
			if ok >= pr.Success {
				p.setReady(true)
			}
		} else {
			ok, fail = 0, fail+1
			if fail >= pr.Failure {
				p.setReady(false)
			}
		}
	})
}

// liveness runs the exec liveness probe; failureThreshold failures in a
// row close failed. It stops once the pod is terminating: the kubelet
// does not act on liveness then.
func (p *Pod) liveness(ctx context.Context, failed chan<- struct{}) {
	pr := p.c.cfg.Spec.Liveness
	fails := 0
	env := p.c.env(p)
	tick(ctx, pr.InitialDelay, pr.Period, func() {
		if p.terminating.Load() || fails >= pr.Failure {
			return
		}
		ectx, cancel := context.WithTimeout(ctx, pr.Timeout)
		defer cancel()
		cmd := exec.CommandContext(ectx, p.c.cfg.Bin, pr.Exec[1:]...)
		cmd.Env = env
		if err := cmd.Run(); err != nil && ctx.Err() == nil {
			fails++
			if fails == pr.Failure {
				close(failed)
			}
			return
		}
		fails = 0
	})
}

// firstTick is how long after started (the container's start) the first
// readiness probe comes: at the first tick of a ticker started at anchor
// (the pod's creation), after the one at anchor itself, at which the
// container has run for the probe's initial delay.
func firstTick(anchor, started time.Time, pr Probe) time.Duration {
	due := started.Add(pr.InitialDelay).Sub(anchor)
	ticks := max(1, int64((due+pr.Period-1)/pr.Period))
	return max(time.Until(anchor.Add(time.Duration(ticks)*pr.Period)), 0)
}

func tick(ctx context.Context, initial, period time.Duration, f func()) {
	select {
	case <-time.After(initial):
	case <-ctx.Done():
		return
	}
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		f()
		select {
		case <-t.C:
		case <-ctx.Done():
			return
		}
	}
}

// Delete terminates the pod as the API server and kubelet do: it is marked
// terminating (leaving the endpoints, after the lag) while its preStop
// hook and SIGTERM run.
func (p *Pod) Delete() {
	if p.terminating.Swap(true) {
		return
	}
	p.c.endpointsChanged()
	close(p.terminate)
}

// Freeze stops the pod's container (SIGSTOP), as a wedged process.
func (p *Pod) Freeze() {
	if proc := p.proc.Load(); proc != nil {
		proc.Signal(syscall.SIGSTOP)
		p.c.event(p, Frozen, "SIGSTOP")
	}
}

// Log is what the pod's last container wrote to stderr.
func (p *Pod) Log() string {
	if proc := p.proc.Load(); proc != nil {
		return proc.Stderr()
	}
	return ""
}

// Restarts is how many times the pod's container was restarted.
func (p *Pod) Restarts() int { return int(p.restarts.Load()) }

// RollingUpdate replaces every pod by a pod of a new revision, as the
// Deployment controller does: it creates new pods while the total stays
// within replicas+maxSurge, and deletes old ones while the available pods
// stay at least replicas-maxUnavailable. It returns once every old pod has
// been deleted and every new one is ready (old ones may still be draining).
func (c *Cluster) RollingUpdate(ctx context.Context) error {
	c.mu.Lock()
	c.revision++
	rev := c.revision
	c.mu.Unlock()
	s := c.cfg.Spec
	return waitUntil(ctx, 10*time.Millisecond, func() bool {
		var old, cur []*Pod
		available := 0
		for _, p := range c.Pods() {
			if p.terminating.Load() {
				continue
			}
			if p.Revision == rev {
				cur = append(cur, p)
			} else {
				old = append(old, p)
			}
			if p.ready.Load() {
				available++
			}
		}
		if len(cur) < s.Replicas && len(old)+len(cur) < s.Replicas+s.MaxSurge {
			c.createPod(rev, c.cfg.StartDelay)
			return false
		}
		// Old pods that are not ready go first; they cost no
		// availability.
		sort.Slice(old, func(i, j int) bool { return !old[i].ready.Load() && old[j].ready.Load() })
		for _, p := range old {
			if !p.ready.Load() {
				p.Delete()
				continue
			}
			if available-1 >= s.Replicas-s.MaxUnavailable {
				p.Delete()
				available--
			}
		}
		ready := 0
		for _, p := range cur {
			if p.ready.Load() {
				ready++
			}
		}
		return len(old) == 0 && ready == s.Replicas
	})
}

// Shutdown deletes every pod and waits until all have exited.
func (c *Cluster) Shutdown(ctx context.Context) error {
	for _, p := range c.Pods() {
		p.Delete()
	}
	err := waitUntil(ctx, 20*time.Millisecond, func() bool { return len(c.Pods()) == 0 })
	c.closeProxies()
	return err
}

// Started is when the cluster started, the timeline's origin.
func (c *Cluster) Started() time.Time { return c.start }

func waitUntil(ctx context.Context, every time.Duration, cond func() bool) error {
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
	return nil
}
