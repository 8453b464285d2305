package health

import (
	"os/exec"
	"strings"
	"testing"
)

// pkg/health links the standard library and this module only: a service
// that imports it gets no CLI framework (it linked cobra, pflag and
// envconfig through pkg/probe). The control, pkg/probe, links cobra for its
// live command.
func TestLinksNoDependency(t *testing.T) {
	for _, tt := range []struct {
		pkg       string
		wantCobra bool
	}{
		{"github.com/drainwell/drainwell/pkg/health", false},
		{"github.com/drainwell/drainwell/pkg/probe", true},
	} {
		out, err := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", tt.pkg).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tt.pkg, err, out)
		}
		var foreign []string
		for _, p := range strings.Fields(string(out)) {
			if !strings.HasPrefix(p, "github.com/drainwell/drainwell/") {
				foreign = append(foreign, p)
			}
		}
		cobra := strings.Contains(string(out), "github.com/spf13/cobra")
		switch {
		case cobra != tt.wantCobra:
			t.Errorf("%s links cobra: %v, want %v", tt.pkg, cobra, tt.wantCobra)
		case !tt.wantCobra && len(foreign) > 0:
			t.Errorf("%s links %v, want the standard library and this module only", tt.pkg, foreign)
		}
	}
}
