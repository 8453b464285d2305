package e2e

import (
	"os/exec"
	"strings"
	"testing"
)

// The binaries we build link no package of ours that imports testing, and
// no package outside a test imports internal/testutil. A tool built on the
// test helpers would otherwise link package testing and its flags.
func TestBinariesLinkNoTesting(t *testing.T) {
	t.Parallel()
	binaries := []string{
		"./cmd/probe", "./cmd/probe-tls", "./cmd/app", "./cmd/drainwell",
		"./e2e/badserver", "./sim/cmd/rollout", "./sim/cmd/bench", "./sim/webhookpod",
		"./tools/releasetool", "./tools/apitext",
	}
	// Packages of others that import testing, and why they are linked.
	known := map[string]string{
		// prometheus/common's expfmt (client_golang's text format) parses
		// with go-abnf, whose generated code imports testing.
		"github.com/pandatix/go-abnf": "prometheus/common v0.73",
	}
	for _, bin := range binaries {
		for pkg, imports := range deps(t, "-deps", bin) {
			if !imports["testing"] {
				continue
			}
			if _, ok := known[pkg]; ok {
				continue
			}
			t.Errorf("%s links %s, which imports testing", bin, pkg)
		}
	}
	// Every module's packages, without their tests.
	patterns := []string{"./...", "./pkg/grpcdrain/...", "./pkg/metrics/...", "./pkg/ctrldrain/...", "./cmd/drainwell/...",
		"./cmd/app/...", "./e2e/...", "./sim/...", "./tools/..."}
	for pkg, imports := range deps(t, patterns...) {
		if imports["github.com/drainwell/drainwell/internal/testutil"] {
			t.Errorf("%s imports internal/testutil outside its tests", pkg)
		}
	}
}

// deps lists what go list says of args: each package and its imports.
func deps(t *testing.T, args ...string) map[string]map[string]bool {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}"}, args...)...)
	cmd.Dir = ".."
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list %s: %v", strings.Join(args, " "), err)
	}
	pkgs := map[string]map[string]bool{}
	for line := range strings.Lines(string(out)) {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		imports := map[string]bool{}
		for _, imp := range fields[1:] {
			imports[imp] = true
		}
		pkgs[fields[0]] = imports
	}
	return pkgs
}
