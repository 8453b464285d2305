package testutil

import (
	"os/exec"
	"strings"
	"testing"
)

// Deps returns the packages pkg links (go list -deps), and, of those, the
// ones outside the standard library.
func Deps(t testing.TB, pkg string) (all, nonStandard []string) {
	t.Helper()
	out, err := exec.Command("go", "list", "-deps", "-f", "{{.ImportPath}} {{.Standard}}", pkg).CombinedOutput()
	if err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, out)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		path, standard, _ := strings.Cut(line, " ")
		all = append(all, path)
		if standard != "true" {
			nonStandard = append(nonStandard, path)
		}
	}
	return all, nonStandard
}
