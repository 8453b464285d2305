package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func run(t *testing.T, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

const corpus = "../../vet/testdata/corpus/"

// allAtOnce is a Deployment whose rollout takes every pod at once: an
// error of rollout-all-at-once.
const allAtOnce = `apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  strategy:
    type: RollingUpdate
    rollingUpdate: {maxUnavailable: 100%}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - {name: web, image: web}
`

// webService routes allAtOnce's pods.
const webService = `apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports:
  - {name: http, port: 80}
`

// indent prefixes s's first line with first and the others with rest.
func indent(s, first, rest string) string {
	var b strings.Builder
	for i, line := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if i == 0 {
			b.WriteString(first + line + "\n")
			continue
		}
		b.WriteString(rest + line + "\n")
	}
	return b.String()
}

func TestExitCodes(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	huge := filepath.Join(dir, "huge.yaml")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(17 << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	warnOnly := corpus + "exec-liveness-cost/fires.yaml"
	tests := []struct {
		name    string
		stdin   string
		args    []string
		want    int
		wantOut string // in stdout
		wantErr string // the one line on stderr
	}{
		{"the project's deploy/", "", []string{"vet", "../../../../deploy"}, 0, "0 errors, 0 warnings", ""},
		{"an error finding", "", []string{"vet", corpus + "grace-period/fires.yaml"}, 1, "error grace-period", ""},
		{"warnings only", "", []string{"vet", warnOnly}, 0, "warning exec-liveness-cost", ""},
		{"a folder, recursively", "", []string{"vet", corpus}, 1, "error service-target-port", ""},
		{"stdin", mustRead(t, corpus+"grace-period/fires.yaml"), []string{"vet", "-"}, 1, "stdin:", ""},
		{"flags after files", "", []string{"vet", warnOnly, "--format", "json"}, 0, `"rule": "exec-liveness-cost"`, ""},
		{"malformed YAML", "", []string{"vet", write("bad.yaml", "apiVersion: v1\nkind: Service\n  metadata: [\n")}, 2, "", "bad.yaml:3: not YAML"},
		{"an unknown kind: a warning", "", []string{"vet", write("kind.yaml", "apiVersion: apps/v1\nkind: Deploymnet\nmetadata: {name: x}\n")}, 0, "0 errors", `warning: ` + dir + `/kind.yaml:2: unknown kind "Deploymnet"`},
		{"an unknown kind, --strict", "", []string{"vet", "--strict", dir + "/kind.yaml"}, 2, "", `kind.yaml:2: unknown kind "Deploymnet"`},
		{"an unknown field: checked without it", "", []string{"vet", write("field.yaml", allAtOnce+"      newField: 1\n---\n"+webService)}, 1, "error rollout-all-at-once", `field.yaml:15: Deployment: unknown field "spec.template.spec.newField"`},
		{"a List's items are checked", "", []string{"vet", write("list.yaml", "apiVersion: v1\nkind: List\nitems:\n"+indent(allAtOnce, "- ", "  ")+indent(webService, "- ", "  "))}, 1, "error rollout-all-at-once", ""},
		{"a typed List too", "", []string{"vet", write("dlist.yaml", "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n"+indent(allAtOnce, "- ", "  ")+"---\n"+webService+"---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBindingList\nitems: []\n")}, 1, "error rollout-all-at-once", ""},
		{"one bad document hides nothing", "", []string{"vet", dir + "/bad.yaml", corpus + "grace-period/fires.yaml"}, 1, "error grace-period", "bad.yaml:3: not YAML"},
		{"the same object in two files, once", "", []string{"vet", dir + "/field.yaml", write("field2.yaml", allAtOnce+"      newField: 1\n---\n"+webService)}, 1, "1 errors", ""},
		{"a huge file", "", []string{"vet", huge}, 2, "", "huge.yaml: larger than 16 MiB"},
		{"empty stdin: nothing to check", "", []string{"vet"}, 0, "0 errors", "nothing to check"},
		{"a missing file", "", []string{"vet", filepath.Join(dir, "nope.yaml")}, 2, "", "nope.yaml: no such file or directory"},
		{"a folder with no manifest", "", []string{"vet", t.TempDir()}, 2, "", "no .yaml, .yml or .json file"},
		{"an unknown format", "", []string{"vet", "--format", "xml", warnOnly}, 2, "", `--format "xml"`},
		{"a bad kube version", "", []string{"vet", "--kube-version", "33", warnOnly}, 2, "", `--kube-version "33"`},
		{"an old kube version", "", []string{"vet", "--kube-version", "1.10", corpus + "kube-version/near-miss.yaml"}, 0, "needs Kubernetes 1.30 (the oldest target is 1.10)", ""},
		{"an unknown flag", "", []string{"vet", "--nope"}, 2, "", "flag provided but not defined: -nope"},
		{"an unknown command", "", []string{"lint"}, 2, "", `unknown command "lint"`},
		{"explain", "", []string{"vet", "--explain", "readiness-at-signal"}, 0, "KEP-1669", ""},
		{"explain an unknown rule", "", []string{"vet", "--explain", "nope"}, 2, "", `no rule "nope"`},
		{"the rules", "", []string{"vet", "--rules"}, 0, "wedge-restart", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := run(t, tt.stdin, tt.args...)
			if code != tt.want || !strings.Contains(out, tt.wantOut) {
				t.Fatalf("exit %d, stdout %q, stderr %q; want %d with %q", code, out, errOut, tt.want, tt.wantOut)
			}
			if tt.wantErr != "" {
				if lines := strings.Split(strings.TrimSpace(errOut), "\n"); len(lines) != 1 || !strings.Contains(lines[0], tt.wantErr) {
					t.Fatalf("stderr %q, want one line with %q", errOut, tt.wantErr)
				}
			}
		})
	}
}

func mustRead(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// --format json is one object: the tool, its version, the findings and
// their summary (it was a bare list, with no count and no version).
func TestJSON(t *testing.T) {
	code, out, errOut := run(t, "", "vet", "--format", "json", corpus+"grace-period/fires.yaml")
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var report struct {
		Tool, Version string
		Findings      []struct{ Rule, Severity string }
		Summary       struct{ Errors, Warnings int }
	}
	if err := json.Unmarshal([]byte(out), &report); err != nil {
		t.Fatal(err)
	}
	if report.Tool != "drainwell" || report.Version == "" || len(report.Findings) != 1 ||
		report.Findings[0].Rule != "grace-period" || report.Summary.Errors != 1 || report.Summary.Warnings != 0 {
		t.Fatalf("JSON report: %s", out)
	}
}

// The SARIF log holds every rule and one result per finding, at its file
// and line (e2e's TestSARIFSchema validates it against the 2.1.0 schema).
func TestSARIF(t *testing.T) {
	code, out, errOut := run(t, "", "vet", "--format", "sarif", corpus+"grace-period/fires.yaml")
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var log struct {
		Version string `json:"version"`
		Runs    []struct {
			Tool struct {
				Driver struct {
					Rules []struct{ ID string } `json:"rules"`
				} `json:"driver"`
			} `json:"tool"`
			Results []struct {
				RuleID    string `json:"ruleId"`
				Locations []struct {
					PhysicalLocation struct {
						Region struct{ StartLine int } `json:"region"`
					} `json:"physicalLocation"`
				} `json:"locations"`
			} `json:"results"`
		} `json:"runs"`
	}
	if err := json.Unmarshal([]byte(out), &log); err != nil {
		t.Fatal(err)
	}
	if log.Version != "2.1.0" || len(log.Runs) != 1 || len(log.Runs[0].Tool.Driver.Rules) < 15 || len(log.Runs[0].Results) != 1 {
		t.Fatalf("SARIF log: %s", out)
	}
	if r := log.Runs[0].Results[0]; r.RuleID != "grace-period" || r.Locations[0].PhysicalLocation.Region.StartLine == 0 {
		t.Fatalf("result: %+v", r)
	}
}

// The run of drainwell vet in docs/vet.md is this run's output.
func TestDocsOutput(t *testing.T) {
	code, out, errOut := run(t, "", "vet", "../../vet/testdata/readme/flawed.yaml")
	if code != 1 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	out = strings.ReplaceAll(out, "../../vet/testdata/readme/flawed.yaml", "shop.yaml")
	readme := mustRead(t, "../../../../docs/vet.md")
	const start = "$ drainwell vet shop.yaml\n"
	i := strings.Index(readme, start)
	if i < 0 {
		t.Fatal("docs/vet.md has no drainwell vet run")
	}
	block := readme[i+len(start):]
	block = block[:strings.Index(block, "```")]
	if block != out {
		t.Fatalf("docs/vet.md's output differs from a real run:\n--- docs/vet.md\n%s--- run\n%s", block, out)
	}
}
