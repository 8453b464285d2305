//go:build admission

package rollout

import (
	"errors"
	"testing"
)

// A failed call is named by what failed, as the table's error kinds show
// it.
func TestAdmissionErrorKind(t *testing.T) {
	for _, tc := range []struct {
		err  string
		want string
	}{
		{`failed to call webhook: Post "https://webhook-service.system.svc:443/validate?timeout=10s": read tcp 127.0.0.1:1->127.0.0.1:2: read: connection reset by peer`, "connection reset by peer"},
		{`failed to call webhook: Post "https://webhook-service.system.svc:443/validate?timeout=10s": EOF`, "EOF"},
		{"denied", "denied"},
		{"something else", "something else"},
	} {
		if got := admissionErrorKind(errors.New(tc.err)); got != tc.want {
			t.Errorf("admissionErrorKind(%q) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestAdmission runs the admission profiles in their short shapes: under
// the drain the webhook answers every call once; under the stock manager
// some calls fail (`make proofs`).
func TestAdmission(t *testing.T) {
	runProfiles(t, admissionProfiles(true))
}
