package probecli

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
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
		out, err := exec.Command("go", "list", "-deps", tt.cmd).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", tt.cmd, err, out)
		}
		deps := strings.Fields(string(out))
		if got := slices.Contains(deps, "crypto/tls"); got != tt.wantsTLS {
			t.Errorf("%s links crypto/tls: %v, want %v", tt.cmd, got, tt.wantsTLS)
		}
	}
}
