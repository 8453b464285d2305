package health

import (
	"slices"
	"strings"
	"testing"

	"github.com/drainwell/drainwell/internal/testutil"
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
		_, nonStandard := testutil.Deps(t, tt.pkg)
		foreign := slices.DeleteFunc(slices.Clone(nonStandard), func(p string) bool {
			return strings.HasPrefix(p, "github.com/drainwell/drainwell/")
		})
		cobra := slices.Contains(nonStandard, "github.com/spf13/cobra")
		switch {
		case cobra != tt.wantCobra:
			t.Errorf("%s links cobra: %v, want %v", tt.pkg, cobra, tt.wantCobra)
		case !tt.wantCobra && len(foreign) > 0:
			t.Errorf("%s links %v, want the standard library and this module only", tt.pkg, foreign)
		}
	}
}
