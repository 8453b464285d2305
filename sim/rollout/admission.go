//go:build admission

package rollout

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apiserver/pkg/admission"
	webhookadmission "k8s.io/apiserver/pkg/admission/plugin/webhook"
	"k8s.io/apiserver/pkg/admission/plugin/webhook/generic"
	webhookrequest "k8s.io/apiserver/pkg/admission/plugin/webhook/request"
	"k8s.io/apiserver/pkg/authentication/user"
	webhookutil "k8s.io/apiserver/pkg/util/webhook"

	"github.com/drainwell/drainwell/e2e/harness"
	"github.com/drainwell/drainwell/e2e/manifest"
	"github.com/drainwell/drainwell/sim/cluster"
)

// The admission profiles run an operator's webhook (sim/webhookpod) in the
// cluster, from sim/webhookpod/config's manifests, and call it as the API
// server does: k8s.io/apiserver's webhook client (ClientManager, the
// AdmissionReview it builds and the response check it makes), with the
// dispatcher's call (a POST with the webhook's timeout, never retried).
// The Service is resolved to the cluster's Service proxy, as the API
// server resolves it to the ClusterIP that kube-proxy routes.

// admissionProfiles are an operator's validating webhook (sim/webhookpod,
// deployed by sim/webhookpod/config: two replicas, DRAIN_DELAY 8s), called
// as the API server calls it. They are built with the admission tag only
// (`make proofs`, `make rollout`): k8s.io/apiserver's webhook client and
// a controller-runtime pod are the heaviest compilation the simulator has.
func admissionProfiles(short bool) []Profile {
	var (
		// A rolling update or a delete at 3 s, then the last old pod's
		// DRAIN_DELAY and the lag, within the load.
		admissionRate     = scale(short, 500, 200)
		admissionDuration = scale(short, 30*time.Second, 20*time.Second)
		// Three API servers (a control plane's), each with its own
		// connections, and a webhook that takes 20 ms: a few connections
		// each.
		apiServers = 3
		admitDelay = "20ms"
	)
	return []Profile{
		// Each call goes on a kept-alive connection of its API server's
		// pool. A failed call is a refused write: the API server does not
		// retry it. Under the drain the webhook answers every call once,
		// through a rolling update and a delete of every pod.
		{Name: "admission: rolling update", Server: "webhookpod", Expect: NoLoss,
			Rate: admissionRate, Duration: admissionDuration, Lag: endpointLag, StartDelay: 1500 * time.Millisecond,
			UpdateAt: 3 * time.Second, Updates: 1, Clients: apiServers, Env: map[string]string{"ADMIT_DELAY": admitDelay}},
		{Name: "admission: delete all pods", Server: "webhookpod", Expect: NoLoss,
			Rate: admissionRate, Duration: admissionDuration, Lag: endpointLag, StartDelay: 1500 * time.Millisecond,
			Disrupt: DeleteAll, DisruptAt: 3 * time.Second, Clients: apiServers, Env: map[string]string{"ADMIT_DELAY": admitDelay}},
		// The same pod as kubebuilder scaffolds it: its listener closes at
		// SIGTERM while the Service still routes to it.
		{Name: "control: admission under the stock manager: rolling update", Server: "webhookpod", Expect: Loss,
			Rate: admissionRate, Duration: admissionDuration, Lag: endpointLag, StartDelay: 1500 * time.Millisecond,
			UpdateAt: 3 * time.Second, Updates: 1, Clients: apiServers, Env: map[string]string{"MANAGER": "stock", "ADMIT_DELAY": admitDelay}},
		{Name: "control: admission under the stock manager: delete all pods", Server: "webhookpod", Expect: Loss,
			Rate: admissionRate, Duration: admissionDuration, Lag: endpointLag, StartDelay: 1500 * time.Millisecond,
			Disrupt: DeleteAll, DisruptAt: 3 * time.Second, Clients: apiServers, Env: map[string]string{"MANAGER": "stock", "ADMIT_DELAY": admitDelay}},
	}
}

// webhookEnv is what the admission profiles share: the pod's binary, its
// Deployment, its webhook and the serving certificate's folder.
type webhookEnv struct {
	bin     string
	spec    cluster.Spec
	hook    admissionregistrationv1.ValidatingWebhook
	certDir string // tls.crt and tls.key, the pods' mounted Secret
	caPEM   []byte
}

// setupWebhook builds the webhook pod and reads its manifests.
func setupWebhook(dir, configDir string) (*webhookEnv, error) {
	bins, err := harness.Build(dir, "github.com/drainwell/drainwell/sim/webhookpod")
	if err != nil {
		return nil, err
	}
	set, err := manifest.LoadDir(configDir)
	if err != nil {
		return nil, err
	}
	d := set.Deployment("controller-manager")
	if d == nil || len(set.Webhooks) != 1 || len(set.Webhooks[0].Webhooks) != 1 {
		return nil, fmt.Errorf("%s: want the controller-manager Deployment and one validating webhook", configDir)
	}
	spec, err := cluster.SpecFromDeployment(d, "manager")
	if err != nil {
		return nil, err
	}
	w := &webhookEnv{bin: bins["webhookpod"], spec: spec, hook: set.Webhooks[0].Webhooks[0]}
	svc := w.hook.ClientConfig.Service
	if svc == nil {
		return nil, errors.New("the webhook has no service")
	}
	pki, err := harness.NewPKI(filepath.Join(dir, "webhook-pki"), "webhook-ca")
	if err != nil {
		return nil, err
	}
	// The name the API server checks: <service>.<namespace>.svc.
	_, certFile, keyFile, err := pki.Issue(svc.Name+"."+svc.Namespace+".svc", x509.ExtKeyUsageServerAuth)
	if err != nil {
		return nil, err
	}
	w.certDir = filepath.Join(dir, "webhook-cert")
	if err := os.MkdirAll(w.certDir, 0o755); err != nil {
		return nil, err
	}
	for src, dst := range map[string]string{certFile: "tls.crt", keyFile: "tls.key"} {
		if err := os.Link(src, filepath.Join(w.certDir, dst)); err != nil {
			return nil, err
		}
	}
	if w.caPEM, err = os.ReadFile(pki.CAFile()); err != nil {
		return nil, err
	}
	return w, nil
}

// runAdmissions runs an admission profile: the webhook's cluster, the
// calls at p.Rate with the disruption beside them, every pod's drain, and
// the row. Row.OK counts the calls allowed; Counter, the requests the pods
// answered; AnsweredTwice, the requests answered more than once.
func runAdmissions(ctx context.Context, e *Env, p Profile) (*Result, error) {
	w, err := e.webhook()
	if err != nil {
		return nil, err
	}
	spec := p.spec(w.spec)
	args := []string{"--webhook-cert-path=" + w.certDir,
		fmt.Sprintf("--webhook-port=%d", spec.Ports["webhook-server"]), fmt.Sprintf("--health-probe-port=%d", spec.ProbePort)}
	c, err := p.startCluster(ctx, e, cluster.Config{
		ServicePorts: []string{"webhook-server"}, Spec: spec, Bin: w.bin, Args: args, Env: p.Env})
	if err != nil {
		return nil, err
	}
	defer c.Shutdown(context.Background())

	var callers []*apiServer
	for range clients(p) {
		caller, err := newAPIServer(w, c.ServiceAddrOf("webhook-server"))
		if err != nil {
			return nil, err
		}
		callers = append(callers, caller)
	}
	start := time.Now()
	results, sent := attackAdmissions(ctx, callers, p)
	disrupted := make(chan disruption, 1)
	go func() { disrupted <- p.disrupt(ctx, c, e, start) }()
	row, latencies, seconds := p.tally(results, start)
	d := <-disrupted
	if d.err != nil {
		return nil, fmt.Errorf("%s: rolling update: %w", p.Name, d.err)
	}

	if err := p.drainAll(ctx, c, spec); err != nil {
		return nil, err
	}
	answered := map[string]int{}
	for _, pod := range c.AllPods() {
		for line := range strings.Lines(pod.Log()) {
			if uid, ok := strings.CutPrefix(strings.TrimSpace(line), "answered "); ok {
				answered[uid]++
			}
		}
	}
	for _, uid := range sent() {
		switch n := answered[string(uid)]; {
		case n > 1:
			row.AnsweredTwice++
			fallthrough
		case n == 1:
			row.Counter++
		}
	}
	// Allowed but never answered, or answered but not allowed.
	row.Lost = int64(row.OK) - row.Counter
	setLatencies(&row, latencies)
	row.Rollout = d.took
	row.Refused = c.Refused()
	readPods(c, &row, setting(p.Env, spec))
	return &Result{Row: row, Start: c.Started(), Load: start, Events: c.Events(), Notes: c.Notes(), Seconds: seconds}, nil
}

// apiServer calls one webhook as the API server's validating dispatcher
// does (k8s.io/apiserver's admission/plugin/webhook/validating).
type apiServer struct {
	cm   webhookutil.ClientManager
	hook admissionregistrationv1.ValidatingWebhook
}

// newAPIServer returns a caller of w's webhook whose Service resolves to
// serviceAddr.
func newAPIServer(w *webhookEnv, serviceAddr string) (*apiServer, error) {
	cm, err := webhookutil.NewClientManager(
		[]schema.GroupVersion{admissionv1.SchemeGroupVersion}, admissionv1.AddToScheme)
	if err != nil {
		return nil, err
	}
	auth, err := webhookutil.NewDefaultAuthenticationInfoResolver("")
	if err != nil {
		return nil, err
	}
	cm.SetAuthenticationInfoResolver(auth)
	cm.SetServiceResolver(serviceResolver{addr: serviceAddr})
	if err := cm.Validate(); err != nil {
		return nil, err
	}
	hook := *w.hook.DeepCopy()
	hook.ClientConfig.CABundle = w.caPEM
	return &apiServer{cm: cm, hook: hook}, nil
}

// serviceResolver resolves every Service to the cluster's Service proxy.
type serviceResolver struct{ addr string }

func (r serviceResolver) ResolveEndpoint(_, _ string, _ int32) (*url.URL, error) {
	return &url.URL{Scheme: "https", Host: r.addr}, nil
}

// attackAdmissions calls the webhook p.Rate times a second for
// p.Duration, each call on schedule whatever the others do, from the
// callers in turn (the API servers of a control plane, each with its own
// connections). sent returns the UIDs of every call, once the results'
// channel has closed.
func attackAdmissions(ctx context.Context, callers []*apiServer, p Profile) (_ <-chan result, sent func() []types.UID) {
	out := make(chan result, 1024)
	var mu sync.Mutex
	var uids []types.UID
	go func() {
		defer close(out)
		var wg sync.WaitGroup
		defer wg.Wait()
		tick := time.NewTicker(time.Second / time.Duration(p.Rate))
		defer tick.Stop()
		end := time.After(p.Duration)
		for i := 0; ; i++ {
			select {
			case <-tick.C:
			case <-end:
				return
			case <-ctx.Done():
				return
			}
			caller := callers[i%len(callers)]
			wg.Go(func() {
				at := time.Now()
				uid, err := caller.call(ctx, fmt.Sprintf("cm-%d", i))
				mu.Lock()
				uids = append(uids, uid)
				mu.Unlock()
				res := result{At: at, Latency: time.Since(at), OK: err == nil}
				if err != nil {
					res.Kind = admissionErrorKind(err)
				}
				out <- res
			})
		}
	}()
	return out, func() []types.UID {
		mu.Lock()
		defer mu.Unlock()
		return uids
	}
}

// call sends one admission for the creation of a ConfigMap called name,
// as the validating dispatcher's callHook does, and returns its UID and
// why it was not allowed (under failurePolicy Fail, a failed call refuses
// the write).
func (a *apiServer) call(ctx context.Context, name string) (types.UID, error) {
	cm := &corev1.ConfigMap{TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default"}}
	gvk := corev1.SchemeGroupVersion.WithKind("ConfigMap")
	gvr := corev1.SchemeGroupVersion.WithResource("configmaps")
	attrs := admission.NewAttributesRecord(cm, nil, gvk, "default", name, gvr, "", admission.Create,
		&metav1.CreateOptions{}, false, &user.DefaultInfo{Name: "sim"})
	versioned := &admission.VersionedAttributes{Attributes: attrs, VersionedObject: admission.NewLazyObject(cm), VersionedKind: gvk}
	invocation := &generic.WebhookInvocation{
		Webhook:  webhookadmission.NewValidatingWebhookAccessor("sim", "validating-webhook-configuration", &a.hook),
		Resource: gvr, Kind: gvk,
	}
	uid, request, response, err := webhookrequest.CreateAdmissionObjects(versioned, invocation)
	if err != nil {
		return uid, err
	}
	client, err := invocation.Webhook.GetRESTClient(&a.cm)
	if err != nil {
		return uid, err
	}
	timeout := 10 * time.Second
	if a.hook.TimeoutSeconds != nil {
		timeout = time.Duration(*a.hook.TimeoutSeconds) * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := client.Post().Body(request).Timeout(timeout).Do(ctx).Into(response); err != nil {
		return uid, fmt.Errorf("failed to call webhook: %w", err)
	}
	result, err := webhookrequest.VerifyAdmissionResponse(uid, false, response)
	if err != nil {
		return uid, fmt.Errorf("received invalid webhook response: %w", err)
	}
	if !result.Allowed {
		return uid, errors.New("denied")
	}
	return uid, nil
}

// admissionErrorKind names a failed call by what failed.
func admissionErrorKind(err error) string {
	msg := err.Error()
	for _, k := range []string{"connection reset by peer", "connection refused", "EOF", "timeout", "tls", "denied", "invalid webhook response"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return msg
}
