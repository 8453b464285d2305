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

// GRPCRate is the gRPC profiles' full-length rate. It is the highest this
// 2-core machine sustains with p99 under 10 ms. At 10,000 RPCs/s nothing
// failed, but p99 reached 240-480 ms, which is saturation. The short (CI)
// shape runs at HeavyRate.
const GRPCRate = 6000

// endpointLag is kube-proxy's endpoint lag, measured on a real cluster.
const endpointLag = time.Second

// scale is long in a full-length run and brief in a short (CI) one.
func scale[T int | time.Duration](short bool, long, brief T) T {
	if short {
		return brief
	}
	return long
}

// Profiles returns the profiles and their negative controls, in the
// table's order. short is the CI version: the same shapes, shorter. Each
// profile is one literal that shows every field it sets. The values that
// several profiles share are named first. The admission profiles come last,
// in a build with the admission tag only (admission.go).
func Profiles(short bool) []Profile {
	var (
		// The articles' load: one rolling update at a low rate.
		articlesDuration = scale(short, 40*time.Second, 12*time.Second)
		articlesUpdateAt = scale(short, 10*time.Second, 3*time.Second)
		// The heavy load: two rolling updates of three replicas, back to back.
		heavyDuration = scale(short, 30*time.Second, 12*time.Second)
		// The gRPC load. The short shape runs at HeavyRate.
		grpcRate = scale(short, GRPCRate, HeavyRate)
		// The load while every endpoint terminates at once.
		allTerminatingDuration = scale(short, 20*time.Second, 7*time.Second)
		// The watch profiles: a rolling update or a delete, then every
		// drain's delay and leave window, within the load.
		watchDuration = scale(short, 35*time.Second, 20*time.Second)
		deleteWatch   = scale(short, 20*time.Second, 14*time.Second)
		watchers      = scale(short, 200, 100)
		grpcWatchers  = scale(short, 100, 50)
		watchWindow   = scale(short, 0, 5*time.Second)
	)
	// A budget as charts render it.
	maxUnavailableOne := intstr.FromInt32(1)

	profiles := []Profile{
		// Every endpoint terminates at once: every pod is deleted, or the
		// only replica. kube-proxy then falls back to the terminating
		// endpoints that still serve, until the replacements are ready.
		// A replacement's container starts 1.5 s after its pod is created.
		// Its first readiness probe comes at the prober's next tick (2 s).
		// That is the window a real cluster shows (docs/terminating-endpoints.md:
		// 202-405 of 8,000 refused at 200 req/s). The readiness probe fails
		// after one failure, as deploy/'s did when that was measured.
		// WORK_DELAY 1s keeps each pod's drain short.
		{Name: "delete all pods", Server: "app", Expect: NoLoss,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Env: map[string]string{"WORK_DELAY": "1s"}},
		// A pod not ready at the signal opts out of the fallback, and its
		// requests are refused. After one failed probe it leaves the fallback,
		// 1-3 s after SIGTERM. Its replacement is ready only after 3 s.
		{Name: "control: not ready at the signal: delete all pods", Server: "app", Expect: Loss,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Env: map[string]string{"DRAIN_READINESS": "not-ready", "WORK_DELAY": "1s"}},
		{Name: "delete the only replica", Server: "app", Expect: NoLoss, Replicas: 1,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Env: map[string]string{"WORK_DELAY": "1s"}},
		{Name: "control: not ready at the signal: delete the only replica", Server: "app", Expect: Loss, Replicas: 1,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Env: map[string]string{"DRAIN_READINESS": "not-ready", "WORK_DELAY": "1s"}},
		// A node drain evicts the only replica. A budget of maxUnavailable 1,
		// as charts render it, lets it go.
		{Name: "node drain of the only replica", Server: "app", Expect: NoLoss, Replicas: 1,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: Drain, DisruptAt: 2 * time.Second,
			PDB: &policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &maxUnavailableOne},
			Env: map[string]string{"WORK_DELAY": "1s"}},
		{Name: "control: not ready at the signal: node drain of the only replica", Server: "app", Expect: Loss, Replicas: 1,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: Drain, DisruptAt: 2 * time.Second,
			PDB: &policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &maxUnavailableOne},
			Env: map[string]string{"DRAIN_READINESS": "not-ready", "WORK_DELAY": "1s"}},
		// The manifest's budget (minAvailable 1) over two replicas. The drain
		// evicts one pod at a time, each after the last replacement is ready.
		{Name: "node drain under the budget", Server: "app", Expect: NoLoss,
			Rate: 200, Duration: scale(short, 25*time.Second, 14*time.Second), Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: Drain, DisruptAt: 2 * time.Second,
			Env: map[string]string{"WORK_DELAY": "1s"}},
		// deploy/'s readiness probe (ReadinessFailures 0 keeps the manifest's
		// failureThreshold, 2). A pod not ready at the signal would then leave
		// the fallback only after 3-5 s. That is about when DRAIN_DELAY ends
		// anyway. So the old policy loses only replacements slower than that.
		{Name: "delete all pods, deploy/'s probe", Server: "app", Expect: NoLoss,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 0, Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Env: map[string]string{"WORK_DELAY": "1s"}},
		// Each RPC goes on a connection of its own, routed by the view at that
		// moment.
		{Name: "grpc delete all pods", Server: "app", Expect: NoLoss,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Env: map[string]string{"WORK_DELAY": "1s"}, GRPC: true, DialPerRequest: true},
		{Name: "control: not ready at the signal: grpc delete all pods", Server: "app", Expect: Loss,
			Rate: 200, Duration: allTerminatingDuration, Lag: endpointLag,
			StartDelay: 1500 * time.Millisecond, ReadinessFailures: 1, Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Env: map[string]string{"DRAIN_READINESS": "not-ready", "WORK_DELAY": "1s"}, GRPC: true, DialPerRequest: true},

		{Name: "articles", Server: "app", Expect: NoLoss,
			Rate: 25, Duration: articlesDuration, UpdateAt: articlesUpdateAt, Updates: 1, Lag: endpointLag},
		{Name: "heavy", Server: "app", Expect: NoLoss,
			Replicas: 3, Rate: HeavyRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag},
		// The manifest's liveness timings. The frozen pod must run again
		// within MaxFreezeToRestart: LIVE_MAX_AGE 20s, then 2 x 10s of failed
		// probes, then 10s of grace.
		{Name: "wedge", Server: "app", Expect: FrozenOnly,
			Rate: 50, Duration: 70 * time.Second, FreezeAt: 3 * time.Second, Lag: endpointLag},
		{Name: "control: hard shutdown", Server: "badserver", Expect: Loss,
			Rate: 25, Duration: articlesDuration, UpdateAt: articlesUpdateAt, Updates: 1, Lag: endpointLag,
			Env: map[string]string{"MODE": "hard"}},
		{Name: "control: DRAIN_DELAY=none", Server: "app", Expect: Loss,
			Replicas: 3, Rate: HeavyRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag,
			Env: map[string]string{"DRAIN_DELAY": "none"}},
		{Name: "control: no wait for work", Server: "badserver", Expect: Loss,
			Rate: 25, Duration: articlesDuration, UpdateAt: articlesUpdateAt, Updates: 1, Lag: endpointLag,
			Env: map[string]string{"MODE": "nowait"}},
		// With the drain delay, plain Shutdown closes only the connections idle
		// for the whole delay, as ours does. It is shown for comparison.
		{Name: "compare: plain Shutdown", Server: "badserver", Expect: Compare,
			Replicas: 3, Rate: HeavyRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag,
			Env: map[string]string{"MODE": "plainshutdown"}},
		// The keep-alive race alone. With no drain delay and no endpoint lag, no
		// request is routed to a pod that stopped accepting. What can still fail
		// is a request written on a keep-alive connection that the server closes.
		{Name: "keepalive", Server: "app", Expect: NoLoss,
			Replicas: 3, Rate: HeavyRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: 0,
			Env: map[string]string{"DRAIN_DELAY": "none"}},
		// With a drain delay longer than IDLE_CLOSE, both drains close the same
		// long-idle connections. Without one, http.Server.Shutdown closes
		// connections that clients are using. That loss is a race: it must
		// show in at least one run.
		{Name: "control: keepalive, plain Shutdown", Server: "badserver", Expect: SometimesLoss,
			Replicas: 3, Rate: HeavyRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: 0,
			Env: map[string]string{"MODE": "plainshutdown", "DRAIN_DELAY": "none"}},
		// LIVE_MAX_AGE=0 checks only that the liveness file exists. A frozen
		// pod passes that check, so it is never restarted.
		{Name: "control: wedge, LIVE_MAX_AGE=0", Server: "app", Expect: NeverRestarted,
			Rate: 50, Duration: 70 * time.Second, FreezeAt: 3 * time.Second, Lag: endpointLag,
			Env: map[string]string{"LIVE_MAX_AGE": "0"}},
		// The manifest as it was: LIVE_MAX_AGE 30s, a probe every 15s, 3
		// failures, and the pod's 35s grace for the kill. A real cluster took
		// 105 s (docs/cluster-measurements.md).
		{Name: "control: wedge, old liveness values", Server: "app", Expect: SlowRestart,
			Rate: 50, Duration: 125 * time.Second, FreezeAt: 3 * time.Second, Lag: endpointLag,
			Env: map[string]string{"LIVE_MAX_AGE": "30s"},
			Liveness: &cluster.Probe{
				Period: 15 * time.Second, Timeout: 2 * time.Second, Failure: 3, InitialDelay: 5 * time.Second}},
		// Every 20th write to Redis faults, during two rolling updates. Its
		// reply is dropped after the write, or delayed past the client's read
		// timeout, or its connection is reset.
		{Name: "redis faults", Server: "app", Expect: NoLoss,
			Replicas: 3, Rate: 200, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag,
			RedisFaults: 20},
		{Name: "control: redis faults, plain INCR retried", Server: "badserver", Expect: Loss,
			Replicas: 3, Rate: 200, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag,
			RedisFaults: 20, Env: map[string]string{"MODE": "incrretry"}},
		// The same Deployment under gRPC load: Incr RPCs through the Service's
		// grpc port, from independent clients. The clients keep grpc-go's
		// defaults, with no retry.
		{Name: "grpc", Server: "app", Expect: NoLoss,
			Replicas: 3, Rate: grpcRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag,
			GRPC: true},
		// Client-side health checking keeps a Watch stream open on every
		// connection. The drain must end those streams, not wait for them.
		{Name: "grpc with health watchers", Server: "app", Expect: NoLoss,
			Replicas: 3, Rate: grpcRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag,
			GRPC: true, HealthCheck: true},
		// This control and the next lose in every run. In the short shape, one
		// rolling update in 8 s shows the loss.
		{Name: "control: grpc Stop at SIGTERM", Server: "badserver", Expect: Loss,
			Replicas: 3, Rate: grpcRate, Duration: scale(short, heavyDuration, 8*time.Second), UpdateAt: 2 * time.Second,
			Updates: scale(short, 2, 1), Lag: endpointLag,
			GRPC: true, Env: map[string]string{"MODE": "grpcstop"}},
		{Name: "control: grpc GracefulStop without delay", Server: "badserver", Expect: Loss,
			Replicas: 3, Rate: grpcRate, Duration: scale(short, heavyDuration, 8*time.Second), UpdateAt: 2 * time.Second,
			Updates: scale(short, 2, 1), Lag: endpointLag,
			GRPC: true, Env: map[string]string{"MODE": "grpcnodelay"}},
		// badserver keeps the health service's Watch streams open, with no
		// deadline. Its drain hangs until the kubelet's SIGKILL.
		{Name: "control: grpc Watch open without a deadline", Server: "badserver", Expect: Killed,
			Replicas: 3, Rate: grpcRate, Duration: heavyDuration, UpdateAt: 2 * time.Second, Updates: 2, Lag: endpointLag,
			GRPC: true, HealthCheck: true, Env: map[string]string{"MODE": "grpcwatch"}},
		// DRAIN_DELAY is shorter than the Service proxy's 1 s lag. Requests keep
		// coming to the end of the delay, and the pods must say so. Each request
		// dials. Until the lag ends the proxy still routes a third of them to
		// the old pod, since three endpoints are in its view. At this rate that
		// is about 5 requests in the delay's last fifth. Over keep-alive
		// connections it was chance whether a client still used one to the old
		// pod then. A CI run saw the last requests at 394 and 580 ms of 800,
		// and no warning.
		{Name: "control: DRAIN_DELAY below the endpoint lag", Server: "app", Expect: LateWarned,
			Rate: 100, Duration: scale(short, 40*time.Second, 8*time.Second), UpdateAt: articlesUpdateAt, Updates: 1,
			Lag: endpointLag, DialPerRequest: true, Env: map[string]string{"DRAIN_DELAY": "800ms"}},

		// Long-lived connections: clients that watch the counter (SSE and
		// the Watch RPC) through the whole run while increments arrive.
		// Each must see every value once, in order, across its
		// reconnections. The pods ask their watchers to leave one at a
		// time over the leave window, so the survivors see a bounded rate
		// of reconnections (ReconnectBound). The short shape sets a 5 s
		// window; the full one takes deploy/'s LEAVE_WINDOW (9 s).
		{Name: "watch: rolling update", Server: "app", Expect: NoLoss, Replicas: 3,
			Rate: 50, Duration: watchDuration, UpdateAt: 2 * time.Second, Updates: 1, Lag: endpointLag,
			Watchers: watchers, GRPCWatchers: grpcWatchers, LeaveWindow: watchWindow},
		// Every pod deleted at once: every pod's watchers leave over the
		// window, and reconnect to the replacements, ready by then.
		{Name: "watch: delete all pods", Server: "app", Expect: NoLoss, Replicas: 3,
			Rate: 50, Duration: deleteWatch, Lag: endpointLag, StartDelay: 1500 * time.Millisecond,
			Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Watchers: watchers, GRPCWatchers: grpcWatchers, LeaveWindow: watchWindow},
		// The control of the spread: every pod deleted, and every watcher
		// asked at the same instant. They reconnect within a second.
		{Name: "control: watch without a leave window", Server: "app", Expect: Spike, Replicas: 3,
			Rate: 50, Duration: deleteWatch, Lag: endpointLag, StartDelay: 1500 * time.Millisecond,
			Disrupt: DeleteAll, DisruptAt: 2 * time.Second,
			Watchers: watchers, GRPCWatchers: grpcWatchers, LeaveWindow: watchWindow,
			Env: map[string]string{"LEAVE_WINDOW": "none"}},
		// The naive server: http.Server.Shutdown waits for the endless
		// streams until SIGKILL, and its /watch starts from the newest value
		// whatever the client saw. A 10 s grace period keeps the run short.
		{Name: "control: watch under a plain Shutdown", Server: "badserver", Expect: Killed, Replicas: 3,
			Rate: 50, Duration: watchDuration + 2*time.Second, UpdateAt: 2 * time.Second, Updates: 1, Lag: endpointLag, Grace: 10 * time.Second,
			Watchers: watchers, Env: map[string]string{"MODE": "plainshutdown"}},
	}
	return append(profiles, admissionProfiles(short)...)
}
