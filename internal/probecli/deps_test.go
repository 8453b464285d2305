package probecli

import (
	"slices"
	"testing"

	"github.com/drainwell/drainwell/internal/testutil"
)

// probe links no TLS (every exec probe pays its package inits); probe-tls,
// the control, does.
func TestProbeLinksNoTLS(t *testing.T) {
	for _, tt := range []struct {
		cmd      string
		wantsTLS bool
	}{
		{"github.com/drainwell/drainwell/cmd/probe", false},
		{"github.com/drainwell/drainwell/cmd/probe-tls", true},
	} {
		deps, _ := testutil.Deps(t, tt.cmd)
		if got := slices.Contains(deps, "crypto/tls"); got != tt.wantsTLS {
			t.Errorf("%s links crypto/tls: %v, want %v", tt.cmd, got, tt.wantsTLS)
		}
	}
}
