//go:build !admission

package rollout

import (
	"context"
	"errors"
)

// Without the admission tag the simulator has no admission profiles, and
// compiles neither k8s.io/apiserver nor a controller-runtime pod
// (admission.go).

type webhookEnv struct{}

func admissionProfiles(bool) []Profile { return nil }

func setupWebhook(string, string) (*webhookEnv, error) {
	return nil, errors.New("the admission profiles need the admission build tag (make proofs)")
}

func runAdmissions(_ context.Context, e *Env, _ Profile) (*Result, error) {
	_, err := e.webhook()
	return nil, err
}
