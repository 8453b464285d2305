package rollout

import (
	"time"

	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/drainwell/drainwell/sim/cluster"
)

// HeavyRate is the heavy profile's rate: what this 2-core machine sustains
// with the harness (load tool, proxy, 3-4 pods, Redis) not the bottleneck.
const HeavyRate = 500

// GRPCRate is the gRPC profiles' full-length rate: the highest this
// 2-core machine sustains with p99 under 10 ms (at 10,000 RPCs/s nothing
// failed, but p99 reached 240-480 ms: saturated). The short (CI) shape
// runs at HeavyRate, inside the race detector.
const GRPCRate = 6000

// Profiles returns the profiles and their negative controls. short is the
// CI version: the same shapes, shorter.
func Profiles(short bool) []Profile {
	scale := func(long, brief time.Duration) time.Duration {
		if short {
			return brief
		}
		return long
	}
	lag := time.Second // kube-proxy's lag measured on a real cluster
	articles := Profile{Name: "articles", Server: "app", Rate: 25, Duration: scale(40*time.Second, 12*time.Second),
		UpdateAt: scale(10*time.Second, 3*time.Second), Updates: 1, Lag: lag}
	heavy := Profile{Name: "heavy", Server: "app", Replicas: 3, Rate: HeavyRate, Duration: scale(30*time.Second, 12*time.Second),
		UpdateAt: 2 * time.Second, Updates: 2, Lag: lag}
	// The manifest's liveness timings: the frozen pod must run again
	// within MaxFreezeToRestart (LIVE_MAX_AGE 20s + 2 x 10s + 10s grace).
	wedge := Profile{Name: "wedge", Server: "app", Rate: 50, Duration: 70 * time.Second,
		FreezeAt: 3 * time.Second, Lag: lag}
	// The manifest as it was: LIVE_MAX_AGE 30s, every 15s x 3, and the
	// pod's 35s grace for the kill (docs/cluster-measurements.md: 105s on a real cluster).
	oldWedge := wedge
	oldWedge.Name, oldWedge.Duration, oldWedge.Expect = "control: wedge, old liveness values", 125*time.Second, SlowRestart
	oldWedge.Env = map[string]string{"LIVE_MAX_AGE": "30s"}
	oldWedge.Liveness = &cluster.Probe{Period: 15 * time.Second, Timeout: 2 * time.Second, Failure: 3, InitialDelay: 5 * time.Second}
	// Redis replies dropped after the write, delayed past the client's
	// read timeout, and connections reset, during two rolling updates.
	redisFaults := heavy
	redisFaults.Name, redisFaults.Rate, redisFaults.RedisFaults = "redis faults", 200, 20

	wedge.Expect = FrozenOnly
	with := func(p Profile, name, server string, env map[string]string) Profile {
		p.Name, p.Server, p.Env, p.Expect = name, server, env, Loss
		return p
	}
	// The keep-alive race alone: no drain delay and no endpoint lag, so no
	// request is routed to a pod that stopped accepting; what can still fail
	// is a request written on a keep-alive connection the server closes.
	// With a drain delay longer than IDLE_CLOSE both drains close the same
	// (long idle) connections; without one, http.Server.Shutdown closes
	// connections that clients are using.
	keepalive := heavy
	keepalive.Name, keepalive.Lag, keepalive.Env = "keepalive", 0, map[string]string{"DRAIN_DELAY": "none"}
	keepaliveControl := with(keepalive, "control: keepalive, plain Shutdown", "badserver", map[string]string{"MODE": "plainshutdown", "DRAIN_DELAY": "none"})
	keepaliveControl.Expect = SometimesLoss
	// With the drain delay, plain Shutdown closes only connections idle
	// for the whole delay, as ours does: shown for comparison.
	plainCompare := with(heavy, "compare: plain Shutdown", "badserver", map[string]string{"MODE": "plainshutdown"})
	plainCompare.Expect = Compare
	wedgeControl := with(wedge, "control: wedge, LIVE_MAX_AGE=0", "app", map[string]string{"LIVE_MAX_AGE": "0"})
	wedgeControl.Expect = NeverRestarted
	redisFaultsControl := with(redisFaults, "control: redis faults, plain INCR retried", "badserver", map[string]string{"MODE": "incrretry"})
	// gRPC: the same Deployment, load as Incr RPCs through the Service's
	// grpc port from independent clients (grpc-go defaults, no retry).
	grpcHeavy := heavy
	grpcHeavy.Name, grpcHeavy.GRPC, grpcHeavy.Rate = "grpc", true, GRPCRate
	if short {
		grpcHeavy.Rate = HeavyRate
	}
	// Client-side health checking keeps a Watch stream open on every
	// connection: the drain must end them, not wait for them.
	grpcWatch := grpcHeavy
	grpcWatch.Name, grpcWatch.HealthCheck = "grpc with health watchers", true
	grpcStop := with(grpcHeavy, "control: grpc Stop at SIGTERM", "badserver", map[string]string{"MODE": "grpcstop"})
	grpcNoDelay := with(grpcHeavy, "control: grpc GracefulStop without delay", "badserver", map[string]string{"MODE": "grpcnodelay"})
	if short { // deterministic controls: one rolling update shows the loss
		for _, c := range []*Profile{&grpcStop, &grpcNoDelay} {
			c.Updates, c.Duration = 1, 8*time.Second
		}
	}
	grpcWatchHold := with(grpcWatch, "control: grpc Watch open without a deadline", "badserver", map[string]string{"MODE": "grpcwatch"})
	grpcWatchHold.Expect = Killed
	// DRAIN_DELAY shorter than the Service proxy's 1 s lag: requests keep
	// coming to the end of the delay, and the pods must say so. (The
	// default profiles are the other control: NoLoss also wants no
	// warning.) Each request dials: the proxy still routes a third of
	// them (three endpoints in its view) to the old pod until the lag
	// ends, about 5 in the delay's last fifth at this rate. Over keep-alive connections whether any client still
	// used one to the old pod then was chance (a CI run saw the last
	// requests at 394 and 580 ms of 800, and no warning).
	shortDelay := with(articles, "control: DRAIN_DELAY below the endpoint lag", "app", map[string]string{"DRAIN_DELAY": "800ms"})
	shortDelay.Rate, shortDelay.DialPerRequest = 100, true
	shortDelay.Duration = scale(40*time.Second, 8*time.Second)
	shortDelay.Expect = LateWarned
	// Every endpoint terminating at once: every pod deleted, the only
	// replica deleted, a node drain evicting the only replica (a budget
	// of maxUnavailable 1, as charts render it, lets it go). kube-proxy
	// then falls back to the terminating endpoints that still serve until
	// the replacements are ready; a pod not ready at the signal opts out
	// of that fallback and its requests are refused. A replacement's
	// container starts 1.5 s after its pod is created, and its first
	// readiness probe comes at the prober's next tick (2 s): the window a
	// real cluster shows (docs/terminating-endpoints.md: 202-405 of 8,000
	// refused at 200 req/s). The readiness probe fails after one failure,
	// as deploy/'s did when that was measured: a pod not ready at the
	// signal then leaves the fallback 1-3 s after SIGTERM, before its
	// replacement is ready (3 s). With deploy/'s failureThreshold 2 it
	// leaves only after 3-5 s, about when DRAIN_DELAY ends anyway, and the
	// old policy loses only replacements slower than that ("delete all
	// pods, deploy/'s probe" shows the default with it). WORK_DELAY 1s
	// keeps each pod's drain short.
	allTerminating := Profile{Server: "app", Rate: 200, Duration: scale(20*time.Second, 7*time.Second),
		DisruptAt: 2 * time.Second, Lag: lag, StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1,
		Env: map[string]string{"WORK_DELAY": "1s"}}
	deleteAll := allTerminating
	deleteAll.Name, deleteAll.Disrupt = "delete all pods", DeleteAll
	onlyReplica := deleteAll
	onlyReplica.Name, onlyReplica.Replicas = "delete the only replica", 1
	one := intstr.FromInt32(1)
	nodeDrain := allTerminating
	nodeDrain.Name, nodeDrain.Disrupt, nodeDrain.Replicas = "node drain of the only replica", Drain, 1
	nodeDrain.PDB = &policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &one}
	// The manifest's budget (minAvailable 1) over two replicas: one
	// eviction at a time, each after the last replacement is ready.
	nodeDrainPDB := allTerminating
	nodeDrainPDB.Name, nodeDrainPDB.Disrupt, nodeDrainPDB.Duration = "node drain under the budget", Drain, scale(25*time.Second, 14*time.Second)
	deleteAllDeploy := deleteAll
	deleteAllDeploy.Name, deleteAllDeploy.ReadinessFailures = "delete all pods, deploy/'s probe", 0
	grpcDeleteAll := deleteAll
	grpcDeleteAll.Name, grpcDeleteAll.GRPC, grpcDeleteAll.DialPerRequest = "grpc delete all pods", true, true
	notReadyAtSignal := func(p Profile) Profile {
		env := map[string]string{"DRAIN_READINESS": "not-ready"}
		for k, v := range p.Env {
			env[k] = v
		}
		return with(p, "control: not ready at the signal: "+p.Name, "app", env)
	}
	return []Profile{
		deleteAll,
		notReadyAtSignal(deleteAll),
		onlyReplica,
		notReadyAtSignal(onlyReplica),
		nodeDrain,
		notReadyAtSignal(nodeDrain),
		nodeDrainPDB,
		deleteAllDeploy,
		grpcDeleteAll,
		notReadyAtSignal(grpcDeleteAll),
		articles,
		heavy,
		wedge,
		with(articles, "control: hard shutdown", "badserver", map[string]string{"MODE": "hard"}),
		with(heavy, "control: DRAIN_DELAY=none", "app", map[string]string{"DRAIN_DELAY": "none"}),
		with(articles, "control: no wait for work", "badserver", map[string]string{"MODE": "nowait"}),
		plainCompare,
		keepalive,
		keepaliveControl,
		wedgeControl,
		oldWedge,
		redisFaults,
		redisFaultsControl,
		grpcHeavy,
		grpcWatch,
		grpcStop,
		grpcNoDelay,
		grpcWatchHold,
		shortDelay,
	}
}
