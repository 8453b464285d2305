// Package envtestproof runs the example operator (examples/operator) through
// a rolling replacement against a real kube-apiserver and etcd (envtest),
// with its stock kubebuilder main as the negative control. make test-envtest
// runs it; make test does not.
package envtestproof

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
	"sigs.k8s.io/yaml"
)

const (
	// The example's LeaderElectionID (examples/operator/cmd/main.go).
	leaseName = "7f3c2a91.example.drainwell.dev"
	// The example's labels and annotation (examples/operator/internal).
	denyLabel    = "example.drainwell.dev/deny"
	watchLabel   = "example.drainwell.dev/watch"
	reconciledBy = "example.drainwell.dev/reconciled-by"

	// DRAIN_DELAY: well above the proxy's lag.
	drainDelay = 3 * time.Second
	// How late the proxy learns of a change, as kube-proxy does.
	proxyLag = time.Second
	// How soon after the leader's exit another may hold the Lease: well
	// under the LeaseDuration (15 s) a lease left held would take.
	leaseHandover = 2 * time.Second

	// The load: creates per second, and in flight at most.
	loadRate    = 60
	loadWorkers = 16
)

// harness is one API server and the operator's two builds.
type harness struct {
	client     kubernetes.Interface
	kubeconfig string
	certDir    string
	caBundle   []byte
	binDir     string
	logDir     string // the API server's, etcd's and the operators' logs
}

func startHarness(t *testing.T) *harness {
	t.Helper()
	assets := os.Getenv("KUBEBUILDER_ASSETS")
	if assets == "" {
		t.Skip("KUBEBUILDER_ASSETS is not set: run make test-envtest")
	}
	h := &harness{certDir: t.TempDir(), binDir: t.TempDir()}
	buildOperator(t, "./cmd", filepath.Join(h.binDir, "ctrldrain"))
	buildOperator(t, "./cmd/stock", filepath.Join(h.binDir, "stock"))
	h.caBundle = servingCert(t, h.certDir)

	h.logDir = logDir(t)
	apiserverLog := createLog(t, filepath.Join(h.logDir, "kube-apiserver.log"))
	etcdLog := createLog(t, filepath.Join(h.logDir, "etcd.log"))
	env := &envtest.Environment{
		BinaryAssetsDirectory: assets,
		ControlPlane: envtest.ControlPlane{
			APIServer: &envtest.APIServer{Out: apiserverLog, Err: apiserverLog},
			Etcd:      &envtest.Etcd{Out: etcdLog, Err: etcdLog},
		},
	}
	cfg, err := env.Start()
	if err != nil {
		dumpLog(t, apiserverLog.Name())
		dumpLog(t, etcdLog.Name())
		t.Fatalf("envtest: %v", err)
	}
	t.Cleanup(func() {
		if err := env.Stop(); err != nil {
			t.Errorf("envtest: stop: %v", err)
		}
	})
	cfg.QPS, cfg.Burst = 1000, 1000
	h.client, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatalf("client: %v", err)
	}
	user, err := env.AddUser(envtest.User{Name: "operator", Groups: []string{"system:masters"}}, nil)
	if err != nil {
		t.Fatalf("operator's user: %v", err)
	}
	kubeconfig, err := user.KubeConfig()
	if err != nil {
		t.Fatalf("operator's kubeconfig: %v", err)
	}
	h.kubeconfig = filepath.Join(t.TempDir(), "kubeconfig")
	if err := os.WriteFile(h.kubeconfig, kubeconfig, 0o600); err != nil {
		t.Fatalf("kubeconfig: %v", err)
	}
	return h
}

// logDir is ENVTEST_LOGS, kept for reading after the run, or a temporary
// folder.
func logDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("ENVTEST_LOGS")
	if dir == "" {
		return t.TempDir()
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatalf("ENVTEST_LOGS: %v", err)
	}
	return dir
}

func createLog(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatalf("log: %v", err)
	}
	t.Cleanup(func() {
		f.Close()
		if t.Failed() {
			dumpLog(t, path)
		}
	})
	return f
}

// dumpLog shows a log's last lines in the test's output.
func dumpLog(t *testing.T, path string) {
	t.Helper()
	out, _ := os.ReadFile(path)
	t.Logf("--- %s (last 4 kB):\n%s", filepath.Base(path), tail(out, 4096))
}

// TestRollingReplacement replaces both replicas of the operator, one at a
// time, under a load of ConfigMap creates that the webhook admits. With
// docs/operators.md's diff no admission call is lost, the draining leader
// still reconciles, and it hands its Lease over at once. The stock
// scaffold, the negative control, must lose calls and keep its Lease.
func TestRollingReplacement(t *testing.T) {
	h := startHarness(t)
	tests := []struct {
		name    string
		binary  string
		drained bool // docs/operators.md's diff applied
	}{
		{name: "ctrldrain", binary: "ctrldrain", drained: true},
		{name: "stock", binary: "stock", drained: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rollOut(t, h, tt.binary, tt.drained)
		})
	}
}

func rollOut(t *testing.T, h *harness, binary string, drained bool) {
	ns := createNamespace(t, h.client, "roll-"+binary)
	px := newProxy(t, proxyLag)
	installWebhook(t, h, px.addr(), ns)
	cfg := operatorConfig{
		binary:     filepath.Join(h.binDir, binary),
		kubeconfig: h.kubeconfig,
		certDir:    h.certDir,
		namespace:  ns,
		logDir:     filepath.Join(h.logDir, binary),
	}
	if err := os.MkdirAll(cfg.logDir, 0o755); err != nil {
		t.Fatalf("log folder: %v", err)
	}

	// Two replicas: the first leads.
	op1 := startOperator(t, cfg, "op-1")
	op1.waitReady(t)
	leader := waitLeaseHolder(t, h.client, ns)
	op2 := startOperator(t, cfg, "op-2")
	op2.waitReady(t)
	<-px.route(op1.webhook, op2.webhook)
	waitDenied(t, h.client, ns)
	createWatched(t, h.client, ns, "watched-before")
	if by := waitAnnotation(t, h.client, ns, "watched-before"); by != op1.name {
		t.Fatalf("watched-before reconciled by %s, want the leader %s", by, op1.name)
	}

	l := startLoad(h.client, ns, loadRate, loadWorkers)
	waitFor(t, 30*time.Second, "the load's first creates", func() bool { return l.count() >= loadRate })

	// The first replacement: op-3 in, op-1 (the leader) out.
	op3 := startOperator(t, cfg, "op-3")
	op3.waitReady(t)
	px.route(op2.webhook, op3.webhook)
	op1.terminate(t)
	lease := watchLeaseAfterExit(h.client, ns, op1, leader)
	// A ConfigMap created during the drain: the draining leader still
	// reconciles it. The stock leader has stopped: the next one will, once
	// the Lease it kept has expired.
	createWatched(t, h.client, ns, "watched-during-drain")
	var duringDrain string
	if drained {
		duringDrain = waitAnnotation(t, h.client, ns, "watched-during-drain")
	}

	// The second: op-4 in, op-2 out.
	op4 := startOperator(t, cfg, "op-4")
	op4.waitReady(t)
	px.route(op3.webhook, op4.webhook)
	op2.terminate(t)

	code1 := op1.wait(t, 40*time.Second)
	code2 := op2.wait(t, 40*time.Second)
	// The load goes on until the proxy has forgotten op-2, and a while more.
	after := l.count()
	waitFor(t, 30*time.Second, "creates after the last exit", func() bool { return l.count() >= after+2*loadRate })
	records := l.finish()
	s := count(records)
	handover := <-lease

	// Times are from the load's start.
	at := func(tm time.Time) time.Duration { return tm.Sub(l.started).Round(time.Millisecond) }
	t.Logf("%s: %d creates sent (%d allowed, %d deny-labelled): %d allowed refused by a webhook call error, %d by other errors; %d of %d deny-labelled denied by the webhook; %d proxied connections found their backend gone",
		binary, len(records), s.allowed, s.denyLabelled, s.allowedRefused, s.allowedOther, s.denyDenied, s.denyLabelled, px.refusedDials())
	t.Logf("%s: SIGTERM op-1 at +%v, exit %d at +%v; SIGTERM op-2 at +%v, exit %d at +%v; the Lease %s",
		binary, at(op1.termAt), code1, at(op1.exitedAt), at(op2.termAt), code2, at(op2.exitedAt), handover)
	for _, r := range s.firstRefusals {
		t.Logf("%s: %s (deny %v) sent at +%v: %s: %s", binary, r.name, r.deny, at(r.sent), r.outcome, r.err)
	}
	afterSignal := 0
	for _, op := range []*operator{op1, op2} {
		if report := drainReport(op.logPath); report != nil {
			t.Logf("%s: %s's drain: end=%s elapsed=%s requests_after_signal=%s last_request_after_signal=%s",
				binary, op.name, report["end"], report["elapsed"], report["requests_after_signal"], report["last_request_after_signal"])
			n, _ := strconv.Atoi(report["requests_after_signal"])
			afterSignal += n
		}
	}

	if !drained {
		// The negative control: it must lose calls, keep its Lease and
		// leave the ConfigMap of the drain to the next leader.
		if s.allowedRefused == 0 {
			t.Errorf("stock: no allowed create refused: the control did not lose, the proof shows nothing")
		}
		if handover.released {
			t.Errorf("stock: the Lease left op-1 within %v of its exit without LeaderElectionReleaseOnCancel", leaseHandover)
		}
		if by := waitAnnotation(t, h.client, ns, "watched-during-drain"); by == op1.name {
			t.Errorf("stock: watched-during-drain reconciled by the stopped leader %s", by)
		} else {
			t.Logf("stock: watched-during-drain reconciled by %s, after the Lease op-1 kept expired", by)
		}
		return
	}
	if s.allowedRefused != 0 || s.allowedOther != 0 {
		t.Errorf("%d allowed creates refused by a webhook call error, %d by other errors; want none", s.allowedRefused, s.allowedOther)
	}
	if s.denyDenied != s.denyLabelled {
		t.Errorf("%d of %d deny-labelled creates denied by the webhook; want all", s.denyDenied, s.denyLabelled)
	}
	if code1 != 0 || code2 != 0 {
		t.Errorf("exit codes: op-1 %d, op-2 %d; want 0", code1, code2)
	}
	if afterSignal == 0 {
		t.Errorf("no admission answered by op-1 or op-2 after their SIGTERM: the run did not reach the drain's window")
	}
	if duringDrain != op1.name {
		t.Errorf("watched-during-drain reconciled by %s; want the draining leader %s", duringDrain, op1.name)
	}
	if !handover.released {
		t.Errorf("the Lease still held by %q %v after op-1's exit; want it released or taken", leader, leaseHandover)
	}
}

// drainReport reads the drain's last line ("drain report", key=value pairs)
// from a process's log, or nil.
func drainReport(path string) map[string]string {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var line string
	for l := range strings.Lines(string(b)) {
		if strings.Contains(l, "drain report ") {
			line = l
		}
	}
	if line == "" {
		return nil
	}
	report := map[string]string{}
	for _, field := range strings.Fields(line) {
		if k, v, ok := strings.Cut(field, "="); ok {
			report[k] = v
		}
	}
	return report
}

// createNamespace creates a namespace of its own for a run.
func createNamespace(t *testing.T, client kubernetes.Interface, prefix string) string {
	t.Helper()
	ns, err := client.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("namespace: %v", err)
	}
	return ns.Name
}

// installWebhook installs the example's ValidatingWebhookConfiguration
// (config/webhook/manifests.yaml), called through the proxy and for this
// run's namespace only.
func installWebhook(t *testing.T, h *harness, proxyAddr, ns string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "examples", "operator", "config", "webhook", "manifests.yaml"))
	if err != nil {
		t.Fatalf("webhook manifest: %v", err)
	}
	var vwc admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict(b, &vwc); err != nil {
		t.Fatalf("webhook manifest: %v", err)
	}
	vwc.Name = vwc.Name + "-" + ns
	for i := range vwc.Webhooks {
		w := &vwc.Webhooks[i]
		if w.FailurePolicy == nil || *w.FailurePolicy != admissionregistrationv1.Fail {
			t.Fatalf("webhook %s: failurePolicy is not Fail", w.Name)
		}
		url := "https://" + proxyAddr + *w.ClientConfig.Service.Path
		w.ClientConfig = admissionregistrationv1.WebhookClientConfig{URL: &url, CABundle: h.caBundle}
		w.NamespaceSelector = &metav1.LabelSelector{MatchLabels: map[string]string{corev1.LabelMetadataName: ns}}
	}
	client := h.client.AdmissionregistrationV1().ValidatingWebhookConfigurations()
	if _, err := client.Create(context.Background(), &vwc, metav1.CreateOptions{}); err != nil {
		t.Fatalf("webhook configuration: %v", err)
	}
	t.Cleanup(func() {
		if err := client.Delete(context.Background(), vwc.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("webhook configuration: %v", err)
		}
	})
}

// waitDenied waits until the API server calls the webhook: a deny-labelled
// create is denied by it.
func waitDenied(t *testing.T, client kubernetes.Interface, ns string) {
	t.Helper()
	var last error
	waitFor(t, 30*time.Second, "the webhook's first denial", func() bool {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			GenerateName: "probe-", Namespace: ns, Labels: map[string]string{denyLabel: "true"}}}
		_, last = client.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{})
		return classify(last) == denied
	})
}

// createWatched creates a ConfigMap the reconciler watches. A create the
// webhook's outage refuses (the control's) is sent again.
func createWatched(t *testing.T, client kubernetes.Interface, ns, name string) {
	t.Helper()
	waitFor(t, 30*time.Second, "creating "+name, func() bool {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{
			Name: name, Namespace: ns, Labels: map[string]string{watchLabel: "true"}}}
		_, err := client.CoreV1().ConfigMaps(ns).Create(context.Background(), cm, metav1.CreateOptions{})
		if classify(err) == otherError {
			t.Fatalf("%s: %v", name, err)
		}
		return err == nil
	})
}

// waitAnnotation returns the replica a watched ConfigMap's annotation names,
// once the reconciler has written it.
func waitAnnotation(t *testing.T, client kubernetes.Interface, ns, name string) string {
	t.Helper()
	var by string
	waitFor(t, 40*time.Second, name+"'s annotation", func() bool {
		got, err := client.CoreV1().ConfigMaps(ns).Get(context.Background(), name, metav1.GetOptions{})
		if err != nil {
			return false
		}
		by = got.Annotations[reconciledBy]
		return by != ""
	})
	return by
}

// waitLeaseHolder waits for the example's Lease to be held and returns its
// holder.
func waitLeaseHolder(t *testing.T, client kubernetes.Interface, ns string) string {
	t.Helper()
	var holder string
	waitFor(t, 60*time.Second, "the Lease's first holder", func() bool {
		holder = leaseHolder(client, ns)
		return holder != ""
	})
	return holder
}

func leaseHolder(client kubernetes.Interface, ns string) string {
	l, err := client.CoordinationV1().Leases(ns).Get(context.Background(), leaseName, metav1.GetOptions{})
	if err != nil || l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

// handover is what became of the Lease after its holder's exit.
type handover struct {
	released bool   // empty or held by another within leaseHandover
	holder   string // its holder then
	after    time.Duration
	err      error
}

func (h handover) String() string {
	switch {
	case h.err != nil:
		return fmt.Sprintf("unread: %v", h.err)
	case h.released && h.holder == "":
		return fmt.Sprintf("released %v after the leader's exit", h.after.Round(time.Millisecond))
	case h.released:
		return fmt.Sprintf("taken by %s %v after the leader's exit", h.holder, h.after.Round(time.Millisecond))
	default:
		return fmt.Sprintf("still held by the old leader %v after its exit", leaseHandover)
	}
}

// watchLeaseAfterExit reads the Lease from the leader's exit on, for
// leaseHandover, and sends what became of it.
func watchLeaseAfterExit(client kubernetes.Interface, ns string, op *operator, leader string) <-chan handover {
	out := make(chan handover, 1)
	go func() {
		<-op.done
		op.mu.Lock()
		exited := op.exitedAt
		op.mu.Unlock()
		for {
			l, err := client.CoordinationV1().Leases(ns).Get(context.Background(), leaseName, metav1.GetOptions{})
			switch {
			case apierrors.IsNotFound(err):
				out <- handover{released: true, after: time.Since(exited)}
				return
			case err != nil:
				out <- handover{err: err}
				return
			}
			holder := ""
			if l.Spec.HolderIdentity != nil {
				holder = *l.Spec.HolderIdentity
			}
			if holder != leader {
				out <- handover{released: true, holder: holder, after: time.Since(exited)}
				return
			}
			if time.Since(exited) > leaseHandover {
				out <- handover{holder: holder, after: time.Since(exited)}
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	return out
}
