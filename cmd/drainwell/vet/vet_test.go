package vet

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, names ...string) *Set {
	t.Helper()
	set, err := Load(names, strings.NewReader(""), true)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func byRule(fs []Finding, rule string) []Finding {
	var out []Finding
	for _, f := range fs {
		if f.Rule == rule {
			out = append(out, f)
		}
	}
	return out
}

// Every rule has a manifest that triggers it and a near miss that must
// not; each finding names its object, field, numbers and fix, at a line.
func TestCorpus(t *testing.T) {
	for _, r := range Rules() {
		t.Run(r.Name, func(t *testing.T) {
			dir := filepath.Join("testdata", "corpus", r.Name)
			fires := byRule(Check(load(t, filepath.Join(dir, "fires.yaml")), Options{}), r.Name)
			if len(fires) == 0 {
				t.Fatalf("%s/fires.yaml: no %s finding", dir, r.Name)
			}
			for _, f := range fires {
				if f.Severity != r.Severity || f.Object == "" || f.Field == "" || f.Message == "" || f.Fix == "" || f.Line == 0 {
					t.Errorf("incomplete finding: %+v", f)
				}
				t.Log(f)
			}
			if near := byRule(Check(load(t, filepath.Join(dir, "near-miss.yaml")), Options{}), r.Name); len(near) > 0 {
				t.Fatalf("%s/near-miss.yaml: %v", dir, near)
			}
		})
	}
	// No corpus folder without its rule.
	entries, err := os.ReadDir(filepath.Join("testdata", "corpus"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, ok := Lookup(e.Name()); !ok {
			t.Errorf("testdata/corpus/%s: no such rule", e.Name())
		}
	}
}

// The project's own manifests pass.
func TestDeployPasses(t *testing.T) {
	if fs := Check(load(t, "../../../deploy"), Options{}); len(fs) > 0 {
		for _, f := range fs {
			t.Error(f)
		}
	}
}

// The articles the project was founded on get the findings their flaws
// deserve (e2e/deploy/testdata/articles holds their manifests): either a
// finding of each rule named, or input the API server would reject.
func TestArticles(t *testing.T) {
	tests := []struct {
		file  string
		rules []string
		input string // an InputError that says this
	}{
		{file: "strategy-type-typo.yaml", input: `spec.strategy.type "RollingUpdates"`},
		{file: "max-unavailable-typo.yaml", input: `max-unavailable-typo.yaml:15: Deployment: unknown field "spec.strategy.rollingUpdate.maxUnavaliable"`},
		{file: "containers-wrong-level.yaml", input: `unknown field "spec.containers"`},
		{file: "prestop-kill.yaml", rules: []string{"exec-needs-program"}},
		{file: "liveness-cat.yaml", rules: []string{"exec-needs-program"}},
		{file: "no-grace.yaml", rules: []string{"grace-period", "drain-delay-short"}},
		{file: "wedge-old-values.yaml", rules: []string{"wedge-restart", "readiness-single-failure"}},
		{file: "lifecycle-conflicts.yaml", rules: []string{"readiness-at-signal", "prestop-and-drain-delay", "stop-signal", "kube-version"}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			name := filepath.Join("../../../e2e/deploy/testdata/articles", tt.file)
			set, err := Load([]string{name}, nil, true)
			if tt.input != "" {
				if err == nil || !strings.Contains(err.Error(), tt.input) {
					t.Fatalf("Load (strict) = %v, want an input error saying %q", err, tt.input)
				}
				// Without --strict, the same problem is a warning (or
				// the error, when nothing else could be read).
				set, err := Load([]string{name}, nil, false)
				if err == nil && (len(set.Problems) == 0 || !strings.Contains(set.Problems[0].Error(), tt.input)) ||
					err != nil && !strings.Contains(err.Error(), tt.input) {
					t.Fatalf("Load = %v, %v; want a problem saying %q", set, err, tt.input)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			fs := Check(set, Options{})
			for _, r := range tt.rules {
				if len(byRule(fs, r)) == 0 {
					t.Errorf("no %s finding; got %v", r, fs)
				}
			}
		})
	}
}

func TestKubeVersion(t *testing.T) {
	set := load(t, "testdata/corpus/kube-version/fires.yaml")
	if fs := byRule(Check(set, Options{KubeVersion: 34}), "kube-version"); len(fs) > 0 {
		t.Fatalf("1.34 has the zero-second sleep: %v", fs)
	}
}

func TestIgnoreAnnotation(t *testing.T) {
	b, err := os.ReadFile("testdata/corpus/rollout-all-at-once/fires.yaml")
	if err != nil {
		t.Fatal(err)
	}
	annotated := strings.Replace(string(b), "  name: web\n", "  name: web\n  annotations:\n    ignore.vet.drainwell.io/rollout-all-at-once: a singleton\n", 1)
	set := &Set{}
	if err := set.Add("annotated.yaml", []byte(annotated)); err != nil {
		t.Fatal(err)
	}
	if fs := byRule(Check(set, Options{}), "rollout-all-at-once"); len(fs) > 0 {
		t.Fatalf("annotated object still reported: %v", fs)
	}
}

func TestLoadKinds(t *testing.T) {
	tests := []struct {
		name, doc string
		wantErr   string // "" for accepted
	}{
		{"every workload kind", `
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: s}
spec: {selector: {matchLabels: {a: b}}, serviceName: s, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}
---
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: d}
spec: {selector: {matchLabels: {a: b}}, template: {metadata: {labels: {a: b}}, spec: {containers: [{name: c, image: i}]}}}
---
apiVersion: batch/v1
kind: CronJob
metadata: {name: c}
spec: {schedule: "* * * * *", jobTemplate: {spec: {template: {spec: {restartPolicy: Never, containers: [{name: c, image: i}]}}}}}
---
apiVersion: v1
kind: Pod
metadata: {name: p}
spec: {containers: [{name: c, image: i}]}
`, ""},
		{"JSON", `{"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "r"}, "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}}`, ""},
		{"kinds no rule reads", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n---\napiVersion: example.com/v1\nkind: Widget\nmetadata: {name: w}\n", ""},
		{"an unknown built-in kind", "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n", `unknown kind "Deploymnet"`},
		{"no kind", "metadata: {name: x}\n", "without apiVersion and kind"},
		{"not a mapping", "- a\n- b\n", "not a Kubernetes object"},
		{"malformed", "apiVersion: v1\nkind: Service\n  metadata: [\n", "not YAML"},
		{"duplicate field", "apiVersion: v1\nkind: Service\nmetadata: {name: a}\nmetadata: {name: b}\n", `in.yaml:4: duplicate field "metadata"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&Set{}).Add("in.yaml", []byte(tt.doc))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Add = %v, want %q", err, tt.wantErr)
			case err != nil && strings.Contains(err.Error(), "\n"):
				t.Fatalf("error of more than one line: %q", err)
			}
		})
	}
}

// A preStop hook alone (no library settings) that takes the whole grace
// period leaves the program no time: the fix asks for more than the value
// the manifest already has (it said "at least 30" of a grace of 30).
func TestGracePreStopOnly(t *testing.T) {
	doc := func(preStop, grace int) string {
		return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      terminationGracePeriodSeconds: %d
      containers:
      - name: web
        image: web
        lifecycle: {preStop: {sleep: {seconds: %d}}}
`, grace, preStop)
	}
	for _, tt := range []struct {
		preStop, grace int
		wantFix        string // "" for no finding
	}{
		{30, 30, "at least 35"},
		{40, 30, "at least 45"},
		{20, 30, ""},
	} {
		set := &Set{}
		if err := set.Add("in.yaml", []byte(doc(tt.preStop, tt.grace))); err != nil {
			t.Fatal(err)
		}
		got := byRule(Check(set, Options{}), "grace-period")
		switch {
		case tt.wantFix == "" && len(got) != 0:
			t.Fatalf("preStop %d, grace %d: %v, want no finding", tt.preStop, tt.grace, got)
		case tt.wantFix != "" && (len(got) != 1 || !strings.Contains(got[0].String(), tt.wantFix)):
			t.Fatalf("preStop %d, grace %d: %v, want one finding saying %q", tt.preStop, tt.grace, got, tt.wantFix)
		}
	}
}

// A numeric targetPort routes whether or not a containerPort declares it
// (both real-world hits of the rule were wrong errors); a name no
// container declares leaves the port without endpoints.
func TestServiceTargetPortNumberRoutes(t *testing.T) {
	const pods = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: web}
---
`
	for _, tt := range []struct {
		target string
		want   int
	}{{"9999", 0}, {"web", 1}} {
		set := &Set{}
		svc := "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports:\n  - {port: 80, targetPort: " + tt.target + "}\n"
		if err := set.Add("in.yaml", []byte(pods+svc)); err != nil {
			t.Fatal(err)
		}
		if got := byRule(Check(set, Options{}), "service-target-port"); len(got) != tt.want {
			t.Fatalf("targetPort %s: %v, want %d findings", tt.target, got, tt.want)
		}
	}
}

// A Recreate singleton that only a metrics Service selects (argo-cd's
// notifications controller: no leader election, Recreate on purpose)
// refuses nothing but a scrape; the same with a Service that routes
// traffic is an error.
func TestRolloutJudgesRoutedPods(t *testing.T) {
	const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: notify}
spec:
  strategy: {type: Recreate}
  selector: {matchLabels: {app: notify}}
  template:
    metadata: {labels: {app: notify}}
    spec:
      containers:
      - {name: notify, image: notify}
---
`
	for _, tt := range []struct {
		service string
		want    int
	}{
		{"", 0},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: notify-metrics}\nspec: {selector: {app: notify}, ports: [{name: metrics, port: 9001}]}\n", 0},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: notify}\nspec: {selector: {app: notify}, ports: [{name: http, port: 80}]}\n", 1},
	} {
		set := &Set{}
		if err := set.Add("in.yaml", []byte(deploy+tt.service)); err != nil {
			t.Fatal(err)
		}
		if got := byRule(Check(set, Options{}), "rollout-all-at-once"); len(got) != tt.want {
			t.Fatalf("Service %q: %v, want %d findings", tt.service, got, tt.want)
		}
	}
}

// A service that embeds the library as the README shows (settings in Go,
// `exec [.., "live"]` liveness) is judged with the library's defaults
// where its env is silent: under a 5 s grace the kubelet kills it at the
// end of its 5 s default delay (vet said "0 errors"). The standalone
// probe's `live` is not the library's drain.
func TestCodeConfiguredServiceHasTheDefaults(t *testing.T) {
	doc := func(live string) string {
		return `apiVersion: apps/v1
kind: Deployment
metadata: {name: shop}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata: {labels: {app: shop}}
    spec:
      terminationGracePeriodSeconds: 5
      containers:
      - name: shop
        image: shop
        livenessProbe: {exec: {command: ["` + live + `", "live"]}}
`
	}
	for _, tt := range []struct {
		bin  string
		want int
	}{{"/shop", 1}, {"/probe", 0}} {
		set := &Set{}
		if err := set.Add("in.yaml", []byte(doc(tt.bin))); err != nil {
			t.Fatal(err)
		}
		got := byRule(Check(set, Options{}), "grace-period")
		if len(got) != tt.want || tt.want == 1 && !strings.Contains(got[0].String(), "SHUTDOWN_TIMEOUT 25s") {
			t.Fatalf("liveness exec [%s live]: %v, want %d grace-period finding with the 25s default", tt.bin, got, tt.want)
		}
	}
}

// A budget over a workload an autoscaler owns is judged against the
// autoscaler's range, not the manifest's replicas (a chart leaves them
// out: "no pod can ever be evicted" was wrong).
func TestPDBWithAnAutoscaler(t *testing.T) {
	const deploy = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: web}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: web}
spec: {minAvailable: 2, selector: {matchLabels: {app: web}}}
`
	hpa := func(min, max int) string {
		return fmt.Sprintf("---\napiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: web}\n"+
			"spec: {scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}, minReplicas: %d, maxReplicas: %d}\n", min, max)
	}
	for _, tt := range []struct {
		name, extra string
		want        int
	}{
		{"no autoscaler: 2 of 2", "", 1},
		{"autoscaled 2 to 10", hpa(2, 10), 0},
		{"autoscaled 2 to 2", hpa(2, 2), 1},
	} {
		set := &Set{}
		if err := set.Add("in.yaml", []byte(deploy+tt.extra)); err != nil {
			t.Fatal(err)
		}
		if got := byRule(Check(set, Options{}), "pdb-blocks-eviction"); len(got) != tt.want {
			t.Fatalf("%s: %v, want %d findings", tt.name, got, tt.want)
		}
	}
}

// An unrendered Helm template says so, at the line of its first action (it
// was a raw Go message at line 1); a rendered manifest with template text
// in a string (a ConfigMap's) is read as it is.
func TestUnrenderedTemplate(t *testing.T) {
	err := (&Set{}).Add("chart.yaml", []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: {{ .Release.Name }}\n"))
	if err == nil || !strings.Contains(err.Error(), "chart.yaml:4: an unrendered template") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Add = %v, want one line saying chart.yaml:4 is an unrendered template", err)
	}
	cm := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  values: |\n    ns: {{ .Release.Namespace }}\n"
	if err := (&Set{}).Add("rendered.yaml", []byte(cm)); err != nil {
		t.Fatalf("a rendered ConfigMap holding template text: %v", err)
	}
}

// DaemonSets and StatefulSets can take every routed pod at once too: a
// DaemonSet at maxUnavailable 100% without surge, a StatefulSet of one
// replica (it cannot surge).
func TestRolloutDaemonSetAndStatefulSet(t *testing.T) {
	const svc = "---\napiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec: {selector: {app: web}, ports: [{name: http, port: 80}]}\n"
	const tmpl = "  selector: {matchLabels: {app: web}}\n  template:\n    metadata: {labels: {app: web}}\n    spec:\n      containers:\n      - {name: web, image: web}\n"
	for _, tt := range []struct {
		name, doc string
		want      int
	}{
		{"DaemonSet 100%", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: web}\nspec:\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 100%}}\n" + tmpl, 1},
		{"DaemonSet 100% with surge", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: web}\nspec:\n  updateStrategy: {type: RollingUpdate, rollingUpdate: {maxUnavailable: 100%, maxSurge: 1}}\n" + tmpl, 0},
		{"DaemonSet default", "apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: web}\nspec:\n" + tmpl, 0},
		{"StatefulSet of 1", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  replicas: 1\n  serviceName: web\n" + tmpl, 1},
		{"StatefulSet of 3", "apiVersion: apps/v1\nkind: StatefulSet\nmetadata: {name: web}\nspec:\n  replicas: 3\n  serviceName: web\n" + tmpl, 0},
	} {
		set := &Set{}
		if err := set.Add("in.yaml", []byte(tt.doc+svc)); err != nil {
			t.Fatal(err)
		}
		if got := byRule(Check(set, Options{}), "rollout-all-at-once"); len(got) != tt.want {
			t.Fatalf("%s: %v, want %d findings", tt.name, got, tt.want)
		}
	}
}
