package vet

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// realWorld holds public projects' manifests as they ship them (each
// folder's SOURCE.md: repository, commit, path, licence), and
// JUDGEMENTS.md every finding vet makes on them, judged by reading the
// manifest: true, wrong or debatable.
const realWorld = "testdata/realworld"

// realWorldUnits are what is checked as one input: a project, or one of
// its installs that hold the same objects (linkerd's default and HA).
var realWorldUnits = []string{"argo-cd", "cloudnative-pg", "gatekeeper", "ingress-nginx", "istio-bookinfo", "kube-prometheus", "kubernetes-examples",
	"linkerd2/default", "linkerd2/ha", "metallb", "microservices-demo"}

// judgement is one row of JUDGEMENTS.md's table.
type judgement struct {
	key      string // project, file:line, rule
	severity string
	verdict  string // true, wrong, debatable
}

// TestRealWorld runs vet on the real-world corpus and fails when a
// finding appears, disappears or changes severity without its judgement
// changing, or when an error is not judged true. It prints the precision.
func TestRealWorld(t *testing.T) {
	judged := readJudgements(t, filepath.Join(realWorld, "JUDGEMENTS.md"))
	entries, err := os.ReadDir(realWorld)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() && !coveredUnit(e.Name()) {
			t.Errorf("%s is in no unit of realWorldUnits", e.Name())
		}
		if e.IsDir() {
			if _, err := os.Stat(filepath.Join(realWorld, e.Name(), "SOURCE.md")); err != nil {
				t.Errorf("%s has no SOURCE.md (repository, commit, path, licence)", e.Name())
			}
		}
	}
	found := map[string]Finding{}
	for _, unit := range realWorldUnits {
		set, err := Load([]string{filepath.Join(realWorld, unit)}, nil, false)
		if err != nil {
			t.Fatalf("%s: %v (a valid manifest must be read)", unit, err)
		}
		for _, p := range set.Problems {
			t.Errorf("%s: a warning on valid input: %v", unit, p)
		}
		for _, f := range Check(set, Options{}) {
			rel, err := filepath.Rel(realWorld, f.File)
			if err != nil {
				t.Fatal(err)
			}
			project, file, _ := strings.Cut(rel, string(filepath.Separator))
			found[fmt.Sprintf("%s | %s:%d | %s", project, file, f.Line, f.Rule)] = f
		}
	}
	var all, truths, wrongErrors int
	var missing, unjudged []string
	for key, f := range found {
		j, ok := judged[key]
		switch {
		case !ok:
			unjudged = append(unjudged, key+" ("+f.String()+")")
			continue
		case j.severity != string(f.Severity):
			t.Errorf("%s: vet says %s, JUDGEMENTS.md %s: judge it again", key, f.Severity, j.severity)
		}
		all++
		if j.verdict == "true" {
			truths++
		} else if f.Severity == Error {
			wrongErrors++
			t.Errorf("%s: an error judged %s", key, j.verdict)
		}
	}
	for key := range judged {
		if _, ok := found[key]; !ok {
			missing = append(missing, key)
		}
	}
	sort.Strings(missing)
	sort.Strings(unjudged)
	for _, k := range missing {
		t.Errorf("judged, but vet no longer finds it (move it to the fixed table with why): %s", k)
	}
	for _, k := range unjudged {
		t.Errorf("found, but not judged in JUDGEMENTS.md: %s", k)
	}
	t.Logf("real-world precision: %d true of %d findings; errors not true: %d", truths, all, wrongErrors)
}

func coveredUnit(dir string) bool {
	for _, u := range realWorldUnits {
		if u == dir || strings.HasPrefix(u, dir+"/") {
			return true
		}
	}
	return false
}

// readJudgements reads the first table of JUDGEMENTS.md (the findings vet
// makes today), by project, file:line and rule.
func readJudgements(t *testing.T, path string) map[string]judgement {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]judgement{}
	inTable := false
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") {
			if inTable {
				break // the first table only
			}
			continue
		}
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		if len(cells) != 6 || cells[0] == "project" || strings.HasPrefix(cells[0], "---") {
			inTable = true
			continue
		}
		key := cells[0] + " | " + cells[1] + " | " + cells[2]
		if _, dup := out[key]; dup {
			t.Fatalf("JUDGEMENTS.md judges %s twice", key)
		}
		switch cells[4] {
		case "true", "wrong", "debatable":
		default:
			t.Fatalf("JUDGEMENTS.md: %s: verdict %q, want true, wrong or debatable", key, cells[4])
		}
		out[key] = judgement{key: key, severity: cells[3], verdict: cells[4]}
	}
	if len(out) == 0 {
		t.Fatal("JUDGEMENTS.md has no judgement table")
	}
	return out
}
