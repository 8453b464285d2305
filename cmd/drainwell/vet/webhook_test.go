package vet

import (
	"fmt"
	"strings"
	"testing"
)

// webhookDoc is an operator as kubebuilder scaffolds it, with the parts a
// case changes. The manager serves its webhook on 9443 behind
// webhook-service; the configuration calls that Service.
type webhookDoc struct {
	replicas   string // "" leaves it unset
	grace      int
	image      string
	container  string // more fields of the manager container, indented 8
	port       string // the container's ports
	svcNS      string // the Service's namespace
	target     string // the Service's targetPort
	apiVersion string // the configuration's
	kind       string
	hook       string // more fields of the webhook, indented 2
	client     string // the webhook's clientConfig, indented 4
	extra      string // more documents
}

func (d webhookDoc) yaml() string {
	def := func(v *string, s string) {
		if *v == "" {
			*v = s
		}
	}
	def(&d.image, "registry.example/operator:1.0")
	def(&d.port, "        ports: [{name: webhook-server, containerPort: 9443}]\n")
	def(&d.svcNS, "operator-system")
	def(&d.target, "webhook-server")
	def(&d.apiVersion, "admissionregistration.k8s.io/v1")
	def(&d.kind, "ValidatingWebhookConfiguration")
	def(&d.client, "    service: {name: webhook-service, namespace: operator-system}\n")
	if d.grace == 0 {
		d.grace = 30
	}
	replicas := ""
	if d.replicas != "" {
		replicas = "  replicas: " + d.replicas + "\n"
	}
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: manager, namespace: operator-system}
spec:
%s  selector: {matchLabels: {control-plane: manager}}
  template:
    metadata: {labels: {control-plane: manager}}
    spec:
      terminationGracePeriodSeconds: %d
      containers:
      - name: manager
        image: %s
%s        readinessProbe: {httpGet: {path: /readyz, port: 8081}}
%s---
apiVersion: v1
kind: Service
metadata: {name: webhook-service, namespace: %s}
spec:
  selector: {control-plane: manager}
  ports: [{port: 443, targetPort: %s}]
---
apiVersion: %s
kind: %s
metadata: {name: operator-webhooks}
webhooks:
- name: vwidget.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  clientConfig:
%s%s%s`, replicas, d.grace, d.image, d.port, d.container, d.svcNS, d.target, d.apiVersion, d.kind, d.client, d.hook, d.extra)
}

const (
	preStop5   = "        lifecycle: {preStop: {sleep: {seconds: 5}}}\n"
	twoReplica = "2"
	pdbDoc     = "---\napiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata: {name: manager, namespace: operator-system}\nspec: {minAvailable: 1, selector: {matchLabels: {control-plane: manager}}}\n"
)

func checkDoc(t *testing.T, doc string) []Finding {
	t.Helper()
	set := &Set{}
	if err := set.Add("in.yaml", []byte(doc)); err != nil {
		t.Fatal(err)
	}
	return Check(set, Options{})
}

// Each webhook rule, with the webhooks it must leave alone: failurePolicy
// Ignore (v1's explicit, v1beta1's default), a URL, a Service elsewhere, a
// server with a delay.
func TestWebhookRules(t *testing.T) {
	rules := []string{"webhook-single-replica", "webhook-pdb-missing", "webhook-no-delay", "grace-period", "grace-short", "pdb-allows-all"}
	tests := []struct {
		name string
		doc  webhookDoc
		want map[string]int // findings by rule; a rule not named wants none
	}{
		{"one replica, failurePolicy defaulted", webhookDoc{container: preStop5}, map[string]int{"webhook-single-replica": 1}},
		{"one replica, Fail", webhookDoc{replicas: "1", container: preStop5, hook: "  failurePolicy: Fail\n"}, map[string]int{"webhook-single-replica": 1}},
		{"one replica, Ignore", webhookDoc{replicas: "1", hook: "  failurePolicy: Ignore\n"}, nil},
		{"a URL", webhookDoc{client: "    url: https://webhook.example.com/validate\n"}, nil},
		{"a Mutating configuration", webhookDoc{kind: "MutatingWebhookConfiguration", container: preStop5}, map[string]int{"webhook-single-replica": 1}},
		{"v1beta1 defaults to Ignore", webhookDoc{apiVersion: "admissionregistration.k8s.io/v1beta1"}, nil},
		{"v1beta1 with Fail", webhookDoc{apiVersion: "admissionregistration.k8s.io/v1beta1", hook: "  failurePolicy: Fail\n"},
			map[string]int{"webhook-single-replica": 1, "webhook-no-delay": 1}},
		{"the Service in another namespace", webhookDoc{svcNS: "elsewhere"}, nil},
		{"the Service with no namespace", webhookDoc{svcNS: `""`, container: preStop5}, map[string]int{"webhook-single-replica": 1}},
		{"an autoscaler from 1", webhookDoc{container: preStop5, extra: "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: manager, namespace: operator-system}\n" +
			"spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: manager}, minReplicas: 1, maxReplicas: 4}\n"}, map[string]int{"webhook-single-replica": 1}},

		{"and a bare Pod the Service selects", webhookDoc{container: preStop5, extra: "---\napiVersion: v1\nkind: Pod\nmetadata: {name: stray, namespace: operator-system, labels: {control-plane: manager}}\n" +
			"spec: {containers: [{name: manager, image: registry.example/operator:1.0, lifecycle: {preStop: {sleep: {seconds: 5}}}}]}\n"},
			map[string]int{"webhook-single-replica": 2}},

		{"two replicas, a budget, a preStop sleep", webhookDoc{replicas: twoReplica, container: preStop5, extra: pdbDoc}, nil},
		{"two replicas, no budget", webhookDoc{replicas: twoReplica, container: preStop5}, map[string]int{"webhook-pdb-missing": 1}},
		{"two replicas, a budget that allows all", webhookDoc{replicas: twoReplica, container: preStop5, extra: strings.Replace(pdbDoc, "minAvailable: 1", "maxUnavailable: 2", 1)},
			map[string]int{"pdb-allows-all": 1}},

		{"no delay", webhookDoc{replicas: twoReplica, extra: pdbDoc}, map[string]int{"webhook-no-delay": 1}},
		{"no delay, grace 5: not grace-short", webhookDoc{replicas: twoReplica, grace: 5, extra: pdbDoc}, map[string]int{"webhook-no-delay": 1}},
		{"DRAIN_DELAY=none", webhookDoc{replicas: twoReplica, extra: pdbDoc, container: "        env: [{name: DRAIN_DELAY, value: none}, {name: SHUTDOWN_TIMEOUT, value: 20s}]\n"},
			map[string]int{"webhook-no-delay": 1}},
		{"DRAIN_DELAY 5s", webhookDoc{replicas: twoReplica, extra: pdbDoc, container: "        env: [{name: DRAIN_DELAY, value: 5s}, {name: SHUTDOWN_TIMEOUT, value: 20s}]\n"}, nil},
		{"the library's live probe", webhookDoc{replicas: twoReplica, extra: pdbDoc, container: "        livenessProbe: {exec: {command: [/manager, live]}}\n"}, nil},
		{"an exec preStop sleep", webhookDoc{replicas: twoReplica, extra: pdbDoc, container: `        lifecycle: {preStop: {exec: {command: [sh, -c, "sleep 5"]}}}` + "\n"}, nil},
		{"a preStop hook vet cannot time", webhookDoc{replicas: twoReplica, extra: pdbDoc, container: "        lifecycle: {preStop: {exec: {command: [/wait-shutdown]}}}\n"}, nil},
		{"Gatekeeper, which waits 10s by itself", webhookDoc{replicas: twoReplica, extra: pdbDoc, image: "openpolicyagent/gatekeeper:v3.24.0"}, nil},
		{"Gatekeeper with --shutdown-delay=0", webhookDoc{replicas: twoReplica, extra: pdbDoc, image: "openpolicyagent/gatekeeper:v3.24.0",
			container: "        args: [--port=8443, --shutdown-delay=0]\n"}, map[string]int{"webhook-no-delay": 1}},
		{"Gatekeeper's 10s + timeoutSeconds 10 in a grace of 15", webhookDoc{replicas: twoReplica, grace: 15, extra: pdbDoc, image: "openpolicyagent/gatekeeper:v3.24.0"},
			map[string]int{"grace-period": 1}},
		{"a numeric targetPort no container declares", webhookDoc{replicas: twoReplica, extra: pdbDoc, port: "\n", target: "9443"}, map[string]int{"webhook-no-delay": 1}},
		{"the webhook calls a port the Service lacks", webhookDoc{replicas: twoReplica, extra: pdbDoc, client: "    service: {name: webhook-service, namespace: operator-system, port: 8443}\n"}, nil},

		{"preStop 5s + timeoutSeconds 10 in a grace of 10", webhookDoc{replicas: twoReplica, grace: 10, container: preStop5, extra: pdbDoc}, map[string]int{"grace-period": 1}},
		{"the same in a grace of 15", webhookDoc{replicas: twoReplica, grace: 15, container: preStop5, extra: pdbDoc}, nil},
		{"the same with timeoutSeconds 3", webhookDoc{replicas: twoReplica, grace: 10, container: preStop5, extra: pdbDoc, hook: "  timeoutSeconds: 3\n"}, nil},
		{"the same with failurePolicy Ignore", webhookDoc{replicas: twoReplica, grace: 10, container: preStop5, extra: pdbDoc, hook: "  failurePolicy: Ignore\n"}, nil},
		{"v1beta1's 30s timeout", webhookDoc{replicas: twoReplica, grace: 30, container: preStop5, extra: pdbDoc,
			apiVersion: "admissionregistration.k8s.io/v1beta1", hook: "  failurePolicy: Fail\n"}, map[string]int{"grace-period": 1}},
		{"DRAIN_DELAY 5s + timeoutSeconds 30 beyond SHUTDOWN_TIMEOUT", webhookDoc{replicas: twoReplica, grace: 30, extra: pdbDoc, hook: "  timeoutSeconds: 30\n",
			container: "        env: [{name: DRAIN_DELAY, value: 5s}, {name: SHUTDOWN_TIMEOUT, value: 20s}]\n"}, map[string]int{"grace-period": 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := checkDoc(t, tt.doc.yaml())
			for _, r := range rules {
				if got := byRule(fs, r); len(got) != tt.want[r] {
					t.Errorf("%s: %d findings, want %d: %v", r, len(got), tt.want[r], got)
				}
			}
		})
	}
}

// The messages name the webhook and the numbers, and the fix fits the case.
func TestWebhookMessages(t *testing.T) {
	tests := []struct {
		name, rule string
		doc        webhookDoc
		want       []string
	}{
		{"one replica", "webhook-single-replica", webhookDoc{container: preStop5},
			[]string{"1 replica serves the failurePolicy Fail webhook vwidget.example.com (ValidatingWebhookConfiguration/operator-webhooks)"}},
		{"an autoscaler", "webhook-single-replica", webhookDoc{container: preStop5, extra: "---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: manager, namespace: operator-system}\n" +
			"spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: manager}, minReplicas: 1, maxReplicas: 4}\n"}, []string{"autoscaler's minReplicas", "fix: minReplicas 2"}},
		{"two webhooks", "webhook-no-delay", webhookDoc{replicas: twoReplica, extra: pdbDoc + "---\napiVersion: admissionregistration.k8s.io/v1\nkind: MutatingWebhookConfiguration\nmetadata: {name: more}\n" +
			"webhooks: [{name: mwidget.example.com, admissionReviewVersions: [v1], sideEffects: None, clientConfig: {service: {name: webhook-service, namespace: operator-system}}}]\n"},
			[]string{"2 failurePolicy Fail webhooks (vwidget.example.com of ValidatingWebhookConfiguration/operator-webhooks, and more)", "spec.template.spec.containers[0].lifecycle.preStop"}},
		{"grace", "grace-period", webhookDoc{replicas: twoReplica, grace: 10, container: preStop5, extra: pdbDoc},
			[]string{"preStop 5s + timeoutSeconds 10 of the webhook vwidget.example.com (ValidatingWebhookConfiguration/operator-webhooks) = 15s exceeds terminationGracePeriodSeconds 10s",
				"fix: set terminationGracePeriodSeconds to at least 15, or lower the webhook's timeoutSeconds"}},
		{"grace and SHUTDOWN_TIMEOUT", "grace-period", webhookDoc{replicas: twoReplica, grace: 30, extra: pdbDoc, hook: "  timeoutSeconds: 30\n",
			container: "        env: [{name: DRAIN_DELAY, value: 5s}, {name: SHUTDOWN_TIMEOUT, value: 20s}]\n"},
			[]string{"DRAIN_DELAY 5s + timeoutSeconds 30", "at least 35 and SHUTDOWN_TIMEOUT to at least 35s"}},
		{"Gatekeeper's own delay", "grace-period", webhookDoc{replicas: twoReplica, grace: 15, extra: pdbDoc, image: "openpolicyagent/gatekeeper:v3.24.0"},
			[]string{"the program's own delay 10s + timeoutSeconds 10 of the webhook vwidget.example.com"}},
		{"a budget that allows all", "pdb-allows-all", webhookDoc{replicas: twoReplica, container: preStop5, extra: strings.Replace(pdbDoc, "minAvailable: 1", "maxUnavailable: 2", 1)},
			[]string{"they serve the failurePolicy Fail webhook vwidget.example.com"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := byRule(checkDoc(t, tt.doc.yaml()), tt.rule)
			if len(got) != 1 {
				t.Fatalf("%d %s findings, want 1: %v", len(got), tt.rule, got)
			}
			for _, w := range tt.want {
				if !strings.Contains(got[0].String(), w) {
					t.Errorf("%s\nwant it to say %q", got[0], w)
				}
			}
		})
	}
}

// A manifest of webhook configurations alone is something to check, and
// their fields are read strictly like any object's.
func TestLoadWebhookConfigurations(t *testing.T) {
	tests := []struct {
		name, doc string
		wantErr   string // "" for accepted
	}{
		{"v1", "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: w}\nwebhooks: []\n", ""},
		{"v1beta1", "apiVersion: admissionregistration.k8s.io/v1beta1\nkind: MutatingWebhookConfiguration\nmetadata: {name: w}\nwebhooks: []\n", ""},
		{"a misspelt field", "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingWebhookConfiguration\nmetadata: {name: w}\nwebhooks:\n- name: a.example.com\n  failurPolicy: Fail\n",
			`in.yaml:6: ValidatingWebhookConfiguration: unknown field "webhooks[0].failurPolicy"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set := &Set{}
			err := set.Add("in.yaml", []byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Add = %v, want %q", err, tt.wantErr)
			}
			if set.Empty() || set.Skipped != 0 {
				t.Fatalf("Empty() = %v, Skipped = %d: the configuration was not read", set.Empty(), set.Skipped)
			}
		})
	}
}
