// Package rollout sends load through rolling updates of a simulated
// cluster (package cluster) and checks that nothing is lost: requests sent
// = 2xx received = the Redis counter, and no transport errors.
package rollout

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"

	vegeta "github.com/tsenart/vegeta/v12/lib"
	policyv1 "k8s.io/api/policy/v1"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/e2e/manifest"
	"github.com/drainwell/drainwell/e2e/redisfault"
	"github.com/drainwell/drainwell/sim/cluster"
)

// Profile is one run: a server, a load and what happens to the pods.
type Profile struct {
	Name     string
	Server   string            // "app", "badserver", or "webhookpod" (admissions)
	Env      map[string]string // overrides of the manifest's env
	Replicas int               // 0: the manifest's
	Rate     int               // requests per second, over all clients
	// Clients is how many independent clients (each its own connection
	// pool, like the pods of a calling service) share the rate. Default
	// DefaultClients.
	Clients  int
	Duration time.Duration // of the load
	UpdateAt time.Duration // when the first rolling update starts
	Updates  int           // back-to-back rolling updates
	Lag      time.Duration // endpoint propagation
	// FreezeAt, when set, SIGSTOPs one pod then (the wedge profile).
	FreezeAt time.Duration
	// Liveness, when set, replaces the manifest's liveness timings.
	Liveness *cluster.Probe
	// ReadinessFailures, when set, replaces the readiness probe's
	// failureThreshold.
	ReadinessFailures int
	// GRPC sends the load as Incr RPCs through the Service's grpc port
	// instead of POST /incr.
	GRPC bool
	// HealthCheck: the gRPC clients watch the health service
	// (client-side health checking), a Watch stream per connection.
	HealthCheck bool
	// RedisFaults, when set, puts a redisfault.Proxy between the pods and
	// Redis that faults every RedisFaults-th write (reply dropped after
	// the write, reply delayed past the client's timeout, reset before).
	RedisFaults int
	// Disrupt, when set, disrupts every pod at DisruptAt, so that every
	// endpoint of the Service is terminating at once.
	Disrupt   Disruption
	DisruptAt time.Duration
	// PDB replaces the manifest's disruption budget for a Drain.
	PDB *policyv1.PodDisruptionBudgetSpec
	// StartDelay is how long a pod created during the run takes before
	// its container runs (scheduling, sandbox, container creation); see
	// cluster.Config.
	StartDelay time.Duration
	// DialPerRequest makes each request (or RPC) on a connection of its
	// own, as short-lived callers do (jobs, CLIs, a caller per request):
	// every request is routed by the proxy's view at that moment, where
	// a keep-alive connection stays on the pod it was opened to.
	DialPerRequest bool
	// Grace, when set, replaces the pod's terminationGracePeriodSeconds.
	Grace time.Duration
	// LeaveWindow, when set, is the pods' LEAVE_WINDOW (unless Env sets
	// it too, as a control does) and the window the reconnect bound is
	// computed from; zero takes the default.
	LeaveWindow time.Duration
	// Watchers and GRPCWatchers are clients that watch the counter
	// through the Service (GET /watch, the Watch RPC) for the whole run,
	// resuming from the last value after each reconnection.
	Watchers, GRPCWatchers int
	// Expect is what the run must show.
	Expect Expect
}

// Disruption is what happens to every pod at once.
type Disruption int

const (
	// NoDisruption: only rolling updates and freezes.
	NoDisruption Disruption = iota
	// DeleteAll deletes every pod at once; the ReplicaSet replaces them.
	DeleteAll
	// Drain drains the node of every pod through the eviction API,
	// honouring the disruption budget.
	Drain
)

// Expect is a profile's verdict rule.
type Expect int

const (
	// NoLoss: sent = 2xx = counter, no errors.
	NoLoss Expect = iota
	// Loss: a negative control; it must lose requests or increments.
	Loss
	// FrozenOnly: the frozen pod is restarted, and nothing is lost but
	// what it had accepted.
	FrozenOnly
	// NeverRestarted: a negative control; the frozen pod is never
	// restarted.
	NeverRestarted
	// SlowRestart: a negative control; the frozen pod is restarted later
	// than MaxFreezeToRestart after it froze, or not within the run.
	SlowRestart
	// Killed: a negative control; a pod hangs in its drain until the
	// kubelet's SIGKILL.
	Killed
	// LateWarned: DRAIN_DELAY is shorter than the endpoint lag; a pod
	// must warn about it (requests may be lost).
	LateWarned
	// SometimesLoss: a control of a probabilistic race; it must lose in
	// at least one of its runs (see Judge).
	SometimesLoss
	// Compare: shown for comparison, no verdict.
	Compare
	// Spike: a negative control of the watchers' spread; a second sees
	// more reconnections than the spread allows (ReconnectBound).
	Spike
)

// Row is a run's outcome.
type Row struct {
	Profile    string
	Rate       int
	Sent       int
	OK         int // 2xx
	Errors     int // transport errors and non-2xx
	Counter    int64
	Lost       int64 // 2xx whose increment never landed
	P50, P99   time.Duration
	Rollout    time.Duration // from the first update's start to the last's end
	Restarts   int
	Refused    int64 // connections the Service could not route
	ErrorKinds map[string]int
	Expect     Expect
	// For a frozen pod: the connections the Service sent it (each can
	// fail at most one request), and the 2xx it answered within
	// WORK_DELAY before it froze (increments that may never land).
	FrozenConns  int64
	FrozenAtRisk int
	// FreezeToRestart is how long after the freeze the frozen pod's
	// container started again; 0 if it did not within the run.
	FreezeToRestart time.Duration
	// RedisFaults counts the faults injected between the pods and Redis.
	RedisFaults int64
	// Kills counts the pods that did not exit within their grace period
	// and were killed.
	Kills int
	// Late is each drained pod's last request after SIGTERM (from its
	// drain report) and the margin DRAIN_DELAY left; LateWarnings counts
	// the pods that warned that DRAIN_DELAY was too short.
	Late         []PodLate
	LateWarnings int
	// Watch is what the watchers saw; ReconnectBound is the most
	// reconnections a second the spread allows (0: no watchers).
	// DrainLongest is the longest drain a pod reported, and DeadlineEnds
	// counts the drains the shutdown timeout ended.
	Watch          WatchStats
	ReconnectBound int
	DrainLongest   time.Duration
	DeadlineEnds   int
	DeadlinePhases []string // what each drain the deadline ended was waiting for
	// AnsweredTwice counts the admission requests a webhook answered
	// more than once (the admission profiles).
	AnsweredTwice int
}

// PodLate is when a pod's last request after SIGTERM came: the endpoint
// propagation lag as the pod saw it, and what was left of DRAIN_DELAY.
type PodLate struct {
	Pod         string
	LastRequest time.Duration // after SIGTERM; 0: none came
	Margin      time.Duration // DRAIN_DELAY minus LastRequest
}

// drainEndRe reads how a pod's drain ended, and how long it took.
var drainEndRe = regexp.MustCompile(`msg="drain report" end=(\S+) elapsed=(\S+)`)

// stuckRe reads the phase a pod's drain was in when its deadline came.
var stuckRe = regexp.MustCompile(`msg="shutdown timeout: abandoning what is left" phase="([^"]*)"`)

// lastRequestRe reads a pod's drain report.
var lastRequestRe = regexp.MustCompile(`msg="drain report".* last_request_after_signal=(\S+)`)

// MaxFreezeToRestart is how soon a frozen pod must run again.
const MaxFreezeToRestart = time.Minute

// Lossy reports whether the run lost anything: a request, an increment,
// or a value a watcher should have seen once.
func (r Row) Lossy() bool {
	return r.Errors > 0 || r.Lost != 0 || r.OK != r.Sent || r.Watch.Missed != 0 || r.Watch.Duplicated != 0 ||
		r.AnsweredTwice != 0
}

// spread reports whether the watchers reconnected within the bound, and
// every drain ended before its deadline.
func (r Row) spread() bool {
	return r.ReconnectBound == 0 || (r.Watch.PeakPerSecond <= r.ReconnectBound && r.DeadlineEnds == 0)
}

// Verdict is "ok" when the run showed what its profile expects, else "FAIL".
func (r Row) Verdict() string {
	var ok bool
	switch r.Expect {
	case NoLoss:
		// A late-request warning is reported, not judged: when the
		// proxy's view holds no ready endpoint (a replacement's probes
		// slow on a loaded machine), it falls back to terminating pods
		// that still serve, and their new connections late in the delay
		// are that fallback working, which a pod cannot tell from stale
		// routing (the heavy profile warned at 4.1 s in 2 of about 8 full runs,
		// losing nothing). A delay really too short loses requests.
		ok = !r.Lossy() && r.Kills == 0 && r.spread()
	case Spike:
		ok = !r.Lossy() && r.Watch.PeakPerSecond > r.ReconnectBound
	case LateWarned:
		ok = r.LateWarnings > 0
	case Killed:
		// With watchers, the naive server also loses values: its
		// streams start at the newest one.
		ok = r.Kills > 0 && (r.Watch.Watchers == 0 || r.Watch.Missed > 0)
	case Loss:
		ok = r.Lossy()
	case FrozenOnly:
		ok = r.Restarts >= 1 && int64(r.Errors) <= r.FrozenConns && r.Lost >= 0 && r.Lost <= int64(r.FrozenAtRisk) &&
			r.FreezeToRestart > 0 && r.FreezeToRestart <= MaxFreezeToRestart
	case NeverRestarted:
		ok = r.Restarts == 0
	case SlowRestart:
		ok = r.FreezeToRestart == 0 || r.FreezeToRestart > MaxFreezeToRestart
	case SometimesLoss:
		if r.Lossy() {
			return "lost"
		}
		return "none"
	case Compare:
		return "-"
	}
	if ok {
		return "ok"
	}
	return "FAIL"
}

// Judge returns the profiles whose runs failed their verdict: a row that
// says FAIL, or a SometimesLoss profile none of whose runs lost.
func Judge(rows []Row) []string {
	var failed []string
	lost := map[string]bool{}
	seen := map[string]bool{}
	for _, r := range rows {
		if r.Verdict() == "FAIL" {
			failed = append(failed, r.Profile)
		}
		if r.Expect == SometimesLoss {
			seen[r.Profile] = true
			lost[r.Profile] = lost[r.Profile] || r.Lossy()
		}
	}
	for p := range seen {
		if !lost[p] {
			failed = append(failed, p+" (no run lost)")
		}
	}
	return failed
}

// Env is what runs share: the built binaries, the manifest's spec and a
// folder for the pods.
type Env struct {
	Bins map[string]string // "app", "badserver"
	Spec cluster.Spec
	PDB  *policyv1.PodDisruptionBudgetSpec // the manifest's, if any
	Dir  string
	Log  io.Writer
	// WebhookDir holds the admission profiles' manifests
	// (sim/webhookpod/config).
	WebhookDir string
	// webhook builds their pod and reads WebhookDir, on first use.
	webhook func() (*webhookEnv, error)
}

// Setup builds the binaries and reads the app's Deployment from deployDir.
func Setup(dir, deployDir string) (*Env, error) {
	bins, err := harness.Build(dir, "github.com/drainwell/drainwell/cmd/app", "github.com/drainwell/drainwell/e2e/badserver")
	if err != nil {
		return nil, err
	}
	set, err := manifest.LoadDir(deployDir)
	if err != nil {
		return nil, err
	}
	d := set.Deployment("app")
	if d == nil {
		return nil, errors.New("no app Deployment in " + deployDir)
	}
	spec, err := cluster.SpecFromDeployment(d, "app")
	if err != nil {
		return nil, err
	}
	e := &Env{Bins: bins, Spec: spec, Dir: dir, Log: io.Discard,
		WebhookDir: filepath.Join(deployDir, "..", "sim", "webhookpod", "config")}
	e.webhook = sync.OnceValues(func() (*webhookEnv, error) { return setupWebhook(e.Dir, e.WebhookDir) })
	for _, pdb := range set.PDBs {
		if pdb.Name == "app" {
			e.PDB = &pdb.Spec
		}
	}
	return e, nil
}

// Result is a run's row and its timeline.
type Result struct {
	Row     Row
	Start   time.Time // the cluster's start: the timeline's origin
	Load    time.Time // the load's start: Seconds[0] begins here
	Events  []cluster.Event
	Notes   []cluster.Event // failed probes, views applied: see Diary
	Seconds []Second
}

// Second is the load in one second of the run.
type Second struct{ OK, Errors int }

// Run runs profile p: Redis and the cluster, the load and the watchers,
// the disruption beside them, then every pod's drain, and the row.
func Run(ctx context.Context, e *Env, p Profile) (*Result, error) {
	if p.Server == "webhookpod" {
		return runAdmissions(ctx, e, p)
	}
	redisDir := filepath.Join(e.Dir, "redis-"+p.Name)
	if err := os.MkdirAll(redisDir, 0o755); err != nil {
		return nil, err
	}
	redis, err := harness.StartRedis(redisDir)
	if err != nil {
		return nil, err
	}
	defer redis.Close()
	spec := p.spec(e.Spec)
	env := map[string]string{"REDIS_ADDR": redis.Addr}
	var faults *redisfault.Proxy
	if p.RedisFaults > 0 {
		faults = &redisfault.Proxy{Target: redis.Addr, Every: p.RedisFaults, Delay: 1500 * time.Millisecond}
		if err := faults.Start(); err != nil {
			return nil, err
		}
		defer faults.Close()
		env["REDIS_ADDR"] = faults.Addr()
	}
	if p.LeaveWindow > 0 {
		env["LEAVE_WINDOW"] = p.LeaveWindow.String()
	}
	maps.Copy(env, p.Env)
	ports := []string{"http"}
	if p.GRPC || p.GRPCWatchers > 0 {
		ports = []string{"http", "grpc"}
	}
	c, err := p.startCluster(ctx, e, cluster.Config{ServicePorts: ports, Spec: spec, Bin: e.Bins[p.Server], Env: env})
	if err != nil {
		return nil, err
	}
	defer c.Shutdown(context.Background())

	// The watchers, then the load, with the disruption beside it.
	var watching *watchers
	if p.Watchers+p.GRPCWatchers > 0 {
		grpcAddr := ""
		if p.GRPCWatchers > 0 {
			grpcAddr = c.ServiceAddrOf("grpc")
		}
		if watching, err = startWatchers(c.ServiceAddr(), grpcAddr, p); err != nil {
			return nil, err
		}
		defer watching.stop()
	}
	start := time.Now()
	var results <-chan result
	if p.GRPC {
		var stopWatching func()
		if results, stopWatching, err = grpcAttack(ctx, c.ServiceAddrOf("grpc"), p); err != nil {
			return nil, err
		}
		defer stopWatching() // after the pods' Shutdown below: open through every drain
	} else {
		results = attack("http://"+c.ServiceAddr()+"/incr", p)
	}
	disrupted := make(chan disruption, 1)
	go func() { disrupted <- p.disrupt(ctx, c, e, start) }()
	row, latencies, seconds := p.tally(results, start)
	d := <-disrupted
	if d.err != nil {
		return nil, fmt.Errorf("%s: rolling update: %w", p.Name, d.err)
	}
	if watching != nil {
		row.Watch = watchUntilSettled(ctx, redis, watching, start)
		row.ReconnectBound = reconnectBound(p, spec, env)
		watching.stop()
	}

	// Every pod drains; then every increment that will land has landed.
	if err := p.drainAll(ctx, c, spec); err != nil {
		return nil, err
	}
	if row.Counter, err = redis.Count(ctx); err != nil {
		return nil, err
	}
	row.Lost = int64(row.OK) - row.Counter
	setLatencies(&row, latencies)
	row.Rollout = d.took
	row.Refused = c.Refused()
	readPods(c, &row, setting(env, spec))
	if d.frozen != nil {
		row.FrozenConns = c.ConnsTo(d.frozen)
		work, _ := time.ParseDuration(setting(env, spec)("WORK_DELAY"))
		// Responses read after the freeze were written before it (a
		// stopped process writes nothing): count them too.
		row.FrozenAtRisk = c.OKsBetween(d.frozen, d.frozenAt.Add(-work), time.Now())
		row.FreezeToRestart = restartedAfter(c.Events(), d.frozen.Name, d.frozenAt)
	}
	if faults != nil {
		for _, n := range faults.Injected() {
			row.RedisFaults += n
		}
	}
	return &Result{Row: row, Start: c.Started(), Load: start, Events: c.Events(), Notes: c.Notes(), Seconds: seconds}, nil
}

// startCluster starts cfg's cluster with p's endpoint lag and start delay,
// on a loopback network of its own.
func (p Profile) startCluster(ctx context.Context, e *Env, cfg cluster.Config) (*cluster.Cluster, error) {
	cfg.Dir = filepath.Join(e.Dir, "pods-"+p.Name)
	cfg.Net = fmt.Sprintf("127.%d.%d", 10+rand.IntN(240), rand.IntN(250))
	cfg.Lag, cfg.StartDelay = p.Lag, p.StartDelay
	c, err := cluster.Start(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("%s: start: %w", p.Name, err)
	}
	return c, nil
}

// drainAll deletes every pod and waits for each to exit, within its grace
// period and a margin.
func (p Profile) drainAll(ctx context.Context, c *cluster.Cluster, spec cluster.Spec) error {
	ctx, cancel := context.WithTimeout(ctx, spec.Grace+10*time.Second)
	defer cancel()
	if err := c.Shutdown(ctx); err != nil {
		return fmt.Errorf("%s: shutdown: %w", p.Name, err)
	}
	return nil
}

// setLatencies sets row's percentiles of latencies.
func setLatencies(row *Row, latencies []time.Duration) {
	slices.Sort(latencies)
	if n := len(latencies); n > 0 {
		row.P50, row.P99 = latencies[n/2], latencies[n*99/100]
	}
}

// spec is the manifest's pod spec with p's overrides.
func (p Profile) spec(spec cluster.Spec) cluster.Spec {
	if p.Replicas > 0 {
		spec.Replicas = p.Replicas
	}
	if p.ReadinessFailures > 0 {
		spec.Readiness.Failure = p.ReadinessFailures
	}
	if p.Grace > 0 {
		spec.Grace = p.Grace
	}
	if p.Liveness != nil {
		spec.Liveness.Period, spec.Liveness.Timeout = p.Liveness.Period, p.Liveness.Timeout
		spec.Liveness.Failure, spec.Liveness.InitialDelay = p.Liveness.Failure, p.Liveness.InitialDelay
		spec.Liveness.Grace = p.Liveness.Grace
	}
	return spec
}

// setting reads a variable of the pods' environment: the run's, else the
// manifest's.
func setting(env map[string]string, spec cluster.Spec) func(string) string {
	return func(name string) string {
		if v, ok := env[name]; ok {
			return v
		}
		return spec.Env[name]
	}
}

// disruption is what p.disrupt did: how long the rolling updates (or the
// delete or the drain) took, and the pod it froze and when.
type disruption struct {
	took     time.Duration
	frozen   *cluster.Pod
	frozenAt time.Time
	err      error
}

// disrupt does to the pods what p says, on p's schedule from start: a
// freeze, a disruption of every pod, rolling updates.
func (p Profile) disrupt(ctx context.Context, c *cluster.Cluster, e *Env, start time.Time) (d disruption) {
	if p.FreezeAt > 0 {
		sleepCtx(ctx, p.FreezeAt)
		pods := c.Pods()
		d.frozen = pods[rand.IntN(len(pods))]
		d.frozenAt = time.Now()
		d.frozen.Freeze()
	}
	if p.Disrupt != NoDisruption {
		sleepCtx(ctx, p.DisruptAt-time.Since(start))
		t0 := time.Now()
		switch p.Disrupt {
		case DeleteAll:
			c.DeleteAll()
		case Drain:
			pdb := e.PDB
			if p.PDB != nil {
				pdb = p.PDB
			}
			d.err = c.Drain(ctx, pdb)
		}
		d.took = time.Since(t0)
	}
	if p.Updates == 0 {
		return d
	}
	sleepCtx(ctx, p.UpdateAt-time.Since(start))
	t0 := time.Now()
	for range p.Updates {
		if d.err = c.RollingUpdate(ctx); d.err != nil {
			return d
		}
	}
	d.took = time.Since(t0)
	return d
}

// tally counts the load's results: the row's requests, every latency, and
// each second's.
func (p Profile) tally(results <-chan result, start time.Time) (Row, []time.Duration, []Second) {
	row := Row{Profile: p.Name, Rate: p.Rate, ErrorKinds: map[string]int{}, Expect: p.Expect}
	var latencies []time.Duration
	seconds := make([]Second, int(p.Duration/time.Second)+2)
	for r := range results {
		row.Sent++
		latencies = append(latencies, r.Latency)
		i := max(min(int(r.At.Sub(start)/time.Second), len(seconds)-1), 0)
		if r.OK {
			row.OK++
			seconds[i].OK++
			continue
		}
		row.Errors++
		seconds[i].Errors++
		row.ErrorKinds[r.Kind]++
	}
	return row, latencies, seconds
}

// readPods reads what every pod did into row: restarts, kills, and from
// each log its late requests, its warning and how its drain ended.
func readPods(c *cluster.Cluster, row *Row, setting func(string) string) {
	for _, pod := range c.AllPods() {
		row.Restarts += pod.Restarts()
	}
	for _, ev := range c.Events() {
		if ev.Phase == cluster.Exited && strings.Contains(ev.Note, "killed") {
			row.Kills++
		}
	}
	delay, _ := time.ParseDuration(setting("DRAIN_DELAY")) // "none": 0
	for _, pod := range c.AllPods() {
		log := pod.Log()
		if strings.Contains(log, "raise DRAIN_DELAY") {
			row.LateWarnings++
		}
		if m := drainEndRe.FindStringSubmatch(log); m != nil {
			elapsed, _ := time.ParseDuration(m[2])
			row.DrainLongest = max(row.DrainLongest, elapsed)
			if m[1] == "deadline" {
				row.DeadlineEnds++
				if p := stuckRe.FindStringSubmatch(log); p != nil {
					row.DeadlinePhases = append(row.DeadlinePhases, pod.Name+": "+p[1])
				}
			}
		}
		if m := lastRequestRe.FindStringSubmatch(log); m != nil {
			last, _ := time.ParseDuration(m[1])
			row.Late = append(row.Late, PodLate{Pod: pod.Name, LastRequest: last, Margin: delay - last})
		}
	}
}

func restartedAfter(events []cluster.Event, pod string, t time.Time) time.Duration {
	restarting := false
	for _, e := range events {
		if e.Pod != pod || e.At.Before(t) {
			continue
		}
		switch {
		case e.Phase == cluster.Restarting:
			restarting = true
		case restarting && e.Phase == cluster.Starting:
			return e.At.Sub(t)
		}
	}
	return 0
}

// DefaultClients is the number of clients that share a profile's rate.
const DefaultClients = 20

func clients(p Profile) int {
	if p.Clients <= 0 {
		return DefaultClients
	}
	return p.Clients
}

// attack runs the profile's clients, each a vegeta attacker with its own
// keep-alive pool (none with p.DialPerRequest), and merges their results.
func attack(url string, p Profile) <-chan result {
	n := min(clients(p), p.Rate)
	target := vegeta.NewStaticTargeter(vegeta.Target{Method: http.MethodPost, URL: url})
	out := make(chan result, 1024)
	var wg sync.WaitGroup
	for i := range n {
		rate := p.Rate / n
		if i < p.Rate%n {
			rate++
		}
		a := vegeta.NewAttacker(vegeta.KeepAlive(!p.DialPerRequest), vegeta.Timeout(30*time.Second), vegeta.Workers(2))
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range a.Attack(target, vegeta.ConstantPacer{Freq: rate, Per: time.Second}, p.Duration, p.Name) {
				ok := r.Code >= 200 && r.Code < 300 && r.Error == ""
				res := result{At: r.Timestamp, Latency: r.Latency, OK: ok}
				if !ok {
					res.Kind = errorKind(r)
				}
				out <- res
			}
		}()
	}
	go func() {
		wg.Wait()
		close(out)
	}()
	return out
}

func errorKind(r *vegeta.Result) string {
	if r.Error == "" {
		return fmt.Sprintf("status %d", r.Code)
	}
	for _, k := range []string{"connection reset by peer", "EOF", "connection refused", "timeout", "Client.Timeout"} {
		if strings.Contains(r.Error, k) {
			return k
		}
	}
	return r.Error
}

func sleepCtx(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	select {
	case <-time.After(d):
	case <-ctx.Done():
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}
