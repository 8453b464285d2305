package vet

import (
	"fmt"
	"time"

	admissionv1 "k8s.io/api/admissionregistration/v1"
	admissionv1beta1 "k8s.io/api/admissionregistration/v1beta1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// webhookConfig is a ValidatingWebhookConfiguration or a
// MutatingWebhookConfiguration, v1 or v1beta1.
type webhookConfig struct {
	name  string // Kind/name
	hooks []admissionWebhook
	src   *source
}

// admissionWebhook is one webhook of a configuration, with its API
// version's defaults applied.
type admissionWebhook struct {
	name   string
	config string // its configuration, Kind/name
	// The Service the API server calls. A webhook called by URL has
	// none, and vet cannot tell which pods serve it.
	svcNamespace, svcName string
	port                  int32
	fail                  bool          // failurePolicy Fail
	timeout               time.Duration // timeoutSeconds
}

// The API's defaults. In v1 a webhook fails closed and waits 10 s; in
// v1beta1 it failed open and waited 30 s.
const (
	defaultWebhookTimeout        = 10 * time.Second
	defaultWebhookTimeoutV1beta1 = 30 * time.Second
	defaultWebhookPort           = 443
)

func newWebhookConfig(kind string, obj any, src *source) *webhookConfig {
	cfg := &webhookConfig{src: src}
	v1 := func(name string, cc admissionv1.WebhookClientConfig, fp *admissionv1.FailurePolicyType, timeout *int32) {
		h := admissionWebhook{name: name, fail: fp == nil || *fp == admissionv1.Fail, timeout: seconds32(timeout, defaultWebhookTimeout)}
		if s := cc.Service; s != nil {
			h.svcNamespace, h.svcName, h.port = s.Namespace, s.Name, port32(s.Port)
		}
		cfg.hooks = append(cfg.hooks, h)
	}
	v1beta1 := func(name string, cc admissionv1beta1.WebhookClientConfig, fp *admissionv1beta1.FailurePolicyType, timeout *int32) {
		h := admissionWebhook{name: name, fail: fp != nil && *fp == admissionv1beta1.Fail, timeout: seconds32(timeout, defaultWebhookTimeoutV1beta1)}
		if s := cc.Service; s != nil {
			h.svcNamespace, h.svcName, h.port = s.Namespace, s.Name, port32(s.Port)
		}
		cfg.hooks = append(cfg.hooks, h)
	}
	switch o := obj.(type) {
	case *admissionv1.ValidatingWebhookConfiguration:
		cfg.name = objectName(kind, &o.ObjectMeta)
		for _, h := range o.Webhooks {
			v1(h.Name, h.ClientConfig, h.FailurePolicy, h.TimeoutSeconds)
		}
	case *admissionv1.MutatingWebhookConfiguration:
		cfg.name = objectName(kind, &o.ObjectMeta)
		for _, h := range o.Webhooks {
			v1(h.Name, h.ClientConfig, h.FailurePolicy, h.TimeoutSeconds)
		}
	case *admissionv1beta1.ValidatingWebhookConfiguration:
		cfg.name = objectName(kind, &o.ObjectMeta)
		for _, h := range o.Webhooks {
			v1beta1(h.Name, h.ClientConfig, h.FailurePolicy, h.TimeoutSeconds)
		}
	case *admissionv1beta1.MutatingWebhookConfiguration:
		cfg.name = objectName(kind, &o.ObjectMeta)
		for _, h := range o.Webhooks {
			v1beta1(h.Name, h.ClientConfig, h.FailurePolicy, h.TimeoutSeconds)
		}
	}
	for i := range cfg.hooks {
		cfg.hooks[i].config = cfg.name
	}
	return cfg
}

func seconds32(v *int32, def time.Duration) time.Duration {
	if v == nil {
		return def
	}
	return time.Duration(*v) * time.Second
}

func port32(p *int32) int32 {
	if p == nil {
		return defaultWebhookPort
	}
	return *p
}

// servedHooks are the webhooks that fail closed whose Service selects a
// workload's pods: all of them, and by container those whose port reaches
// it.
type servedHooks struct {
	pod        []*admissionWebhook
	containers [][]*admissionWebhook // by index in the pod's containers
}

// failClosedHooks finds the webhooks with failurePolicy Fail that w's pods
// serve. A webhook names its Service by namespace and name. A Service that
// sets no namespace lands in the one it is applied to: it is taken to be
// the webhook's, beside pods in that namespace or in none. The Service
// selects the pods as it does for traffic.
// Its port that the webhook calls reaches the containers that declare the
// target port. A number no container declares reaches the only container
// of a one-container pod.
func (c *checker) failClosedHooks(w *Workload) servedHooks {
	out := servedHooks{containers: make([][]*admissionWebhook, len(w.Pod.Containers))}
	for _, cfg := range c.set.webhooks {
		for i := range cfg.hooks {
			h := &cfg.hooks[i]
			if !h.fail || h.svcName == "" {
				continue
			}
			s := c.webhookService(h)
			if s == nil {
				continue
			}
			ns := s.Meta.Namespace
			if ns == "" && (w.Meta.Namespace == "" || w.Meta.Namespace == h.svcNamespace) {
				ns = w.Meta.Namespace // both land where they are applied
			}
			if len(s.Obj.Spec.Selector) == 0 || !w.selectedBy(ns, selectorOf(s.Obj.Spec.Selector)) {
				continue
			}
			out.pod = append(out.pod, h)
			for _, sp := range s.Obj.Spec.Ports {
				if sp.Port != h.port {
					continue
				}
				found := false
				for j := range w.Pod.Containers {
					if reaches(sp, &w.Pod.Containers[j]) {
						out.containers[j], found = append(out.containers[j], h), true
					}
				}
				if !found && sp.TargetPort.Type == intstr.Int && len(w.Pod.Containers) == 1 {
					out.containers[0] = append(out.containers[0], h)
				}
			}
		}
	}
	return out
}

// webhookService is the Service a webhook calls, or nil.
func (c *checker) webhookService(h *admissionWebhook) *Object[corev1.Service] {
	for _, s := range c.set.Services {
		if s.Meta.Name == h.svcName && (s.Meta.Namespace == h.svcNamespace || s.Meta.Namespace == "") {
			return s
		}
	}
	return nil
}

// slowest is the webhook with the longest timeoutSeconds, or nil.
func slowest(hooks []*admissionWebhook) *admissionWebhook {
	var out *admissionWebhook
	for _, h := range hooks {
		if out == nil || h.timeout > out.timeout {
			out = h
		}
	}
	return out
}

// describe names the webhooks a finding is about: the first by name and
// configuration, and how many more.
func describe(hooks []*admissionWebhook) string {
	if len(hooks) == 1 {
		return fmt.Sprintf("the failurePolicy Fail webhook %s (%s)", hooks[0].name, hooks[0].config)
	}
	return fmt.Sprintf("%d failurePolicy Fail webhooks (%s of %s, and more)", len(hooks), hooks[0].name, hooks[0].config)
}

// replicated reports a kind with a replica count: what a budget and a
// second replica can keep serving.
func (w *Workload) replicated() bool {
	return w.Deployment != nil || w.StatefulSet != nil || w.Kind == "ReplicaSet"
}

var ruleWebhookSingleReplica = Rule{
	Name: "webhook-single-replica", Severity: Error,
	Summary: "one replica serves an admission webhook whose failurePolicy is Fail",
	Explain: `The API server calls an admission webhook through its Service, once, and never
retries: with failurePolicy Fail (the default in admissionregistration.k8s.io/v1)
a call that fails refuses the request it was asked about (a kubectl apply, a Helm
upgrade, a controller's write). With one replica the webhook has one endpoint. An
eviction (a node drain, the cluster autoscaler) terminates it before its
replacement exists: the ReplicaSet creates one only then, and it is ready
seconds later at best (scheduling, image pull, start, first probe). A node
failure leaves no endpoint for minutes. Every call in that time is refused,
whatever the program does. Run two replicas or more, with a disruption budget of
minAvailable 1. A webhook called by URL cannot be matched and is not judged; one
with failurePolicy Ignore is not judged either: a failed call admits the request
unchecked (or unmutated), which is the trade its owner chose, and nothing is
refused.`,
	check: checkWebhookSingleReplica,
}

func checkWebhookSingleReplica(c *checker, w *Workload) []Finding {
	if w.Replicas != 1 || !w.serves() {
		return nil
	}
	hooks := c.failClosedHooks(w).pod
	if len(hooks) == 0 {
		return nil
	}
	p, count, fix := []any{"spec", "replicas"}, "1 replica", "replicas 2 or more and a PodDisruptionBudget of minAvailable 1"
	switch {
	case w.Kind == "Pod":
		p, count, fix = []any{"metadata", "name"}, "a bare Pod", "a Deployment of 2 replicas or more and a PodDisruptionBudget of minAvailable 1"
	case w.MaxReplicas > 0:
		count, fix = "1 replica (its autoscaler's minReplicas)", "minReplicas 2 or more and a PodDisruptionBudget of minAvailable 1"
	}
	return []Finding{w.finding("", p, fieldPath(p),
		fmt.Sprintf("%s serves %s: an eviction or a node failure leaves no endpoint until a replacement is ready, and the API server refuses every request the webhook is called for meanwhile", count, describe(hooks)),
		fix)}
}

var ruleWebhookPDBMissing = Rule{
	Name: "webhook-pdb-missing", Severity: Warning,
	Summary: "no disruption budget keeps a failurePolicy Fail webhook's replicas from going at once",
	Explain: `Without a PodDisruptionBudget the eviction API lets a node drain evict every
replica of a webhook at once: replicas the scheduler put on one node, or several
nodes drained together (a node pool's upgrade). With failurePolicy Fail every
admission call is then refused until a replacement is ready (the API server
never retries a call). A budget of minAvailable 1 keeps one. A warning: whether
a drain takes every replica is the cluster's (required anti-affinity spreads
them, not concurrent drains). One replica is webhook-single-replica's; a budget
that allows every replica to go is pdb-allows-all's, whose message then names
the webhook.`,
	check: checkWebhookPDBMissing,
}

func checkWebhookPDBMissing(c *checker, w *Workload) []Finding {
	if !w.replicated() || w.Replicas < 2 || len(c.budgets(w)) > 0 {
		return nil
	}
	hooks := c.failClosedHooks(w).pod
	if len(hooks) == 0 {
		return nil
	}
	p := []any{"spec", "selector"}
	return []Finding{w.finding("", p, fieldPath(p),
		fmt.Sprintf("no PodDisruptionBudget selects the %s that serve %s: a node drain may evict them all at once, and the API server refuses every request the webhook is called for until one is ready", replicas(w.Replicas), describe(hooks)),
		"a PodDisruptionBudget of minAvailable 1 that selects the pods")}
}

var ruleWebhookNoDelay = Rule{
	Name: "webhook-no-delay", Severity: Warning,
	Summary: "a failurePolicy Fail webhook's server stops at SIGTERM with no delay",
	Explain: `A terminating pod's endpoint is removed while SIGTERM is sent: for about a
second kube-proxy still routes the API server's admission calls to it. A webhook
server that closes its listener at SIGTERM (controller-runtime's, as kubebuilder
scaffolds it) refuses them, and with failurePolicy Fail each is a refused
request: the API server never retries a call. A public operator measured 181 of
788 webhook calls failed during one Helm upgrade, and fixed it with a preStop
sleep. Keep serving for a few seconds: lifecycle.preStop.sleep, or the library's
drain (pkg/ctrldrain, DRAIN_DELAY set in the manifest). The delay is read as
every rule reads it: the preStop sleep plus DRAIN_DELAY, plus the delay of a
program known to wait by itself (Gatekeeper's --shutdown-delay, 10 s by
default). A preStop hook vet cannot time is taken to wait. A warning: whether
the program keeps serving after SIGTERM is the program's. The grace period
under the delay is grace-period's, which names the webhook.`,
	check: checkWebhookNoDelay,
}

func checkWebhookNoDelay(c *checker, w *Workload) []Finding {
	if !w.serves() {
		return nil
	}
	var out []Finding
	for i, hooks := range c.failClosedHooks(w).containers {
		ct := &w.Pod.Containers[i]
		if len(hooks) == 0 {
			continue
		}
		if d, timed := servingDelay(ct); d > 0 || !timed {
			continue
		}
		p := w.containerPath(false, i, "lifecycle", "preStop")
		out = append(out, w.finding(ct.Name, p, fieldPath(p),
			fmt.Sprintf("the container serves %s and stops at SIGTERM with no delay (no preStop sleep, no DRAIN_DELAY): kube-proxy still routes the API server's calls to it for about a second, and each refused call refuses a request", describe(hooks)),
			fmt.Sprintf("lifecycle.preStop.sleep of 5s with terminationGracePeriodSeconds at least 5 + timeoutSeconds %d (or drain in the program: pkg/ctrldrain, DRAIN_DELAY)", int(slowest(hooks).timeout/time.Second))))
	}
	return out
}
