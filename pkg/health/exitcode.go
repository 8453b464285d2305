package health

import (
	"errors"

	"github.com/drainwell/drainwell/internal/marker"
)

// Exit statuses for a service's main, one per way its Server's Run ends.
// They are API: Kubernetes restarts containers by exit code
// (restartPolicyRules, KEP-5307, beta since 1.35), so they never change
// meaning.
const (
	ExitClean           = 0 // the drain finished: every request and task done
	ExitFailed          = 1 // any other failure: a stop hook's or a component's error, the marker not removed
	ExitUsage           = 2 // bad configuration (probe.ErrUsage), before the server listened
	ExitServerStopped   = 3 // a listener or component stopped serving before the drain (ErrServerStopped)
	ExitShutdownTimeout = 4 // the shutdown deadline cut work (ErrShutdownTimeout)
	ExitInterrupted     = 5 // a second signal ended the drain (ErrInterrupted)
)

// ExitCode maps an error of Run or Serve to the exit status of its ending.
// When several endings are joined, the latest in the drain wins: a second
// signal, then the deadline, then a server that stopped, then bad usage.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitClean
	case errors.Is(err, ErrInterrupted):
		return ExitInterrupted
	case errors.Is(err, ErrShutdownTimeout):
		return ExitShutdownTimeout
	case errors.Is(err, ErrServerStopped):
		return ExitServerStopped
	case errors.Is(err, marker.ErrUsage):
		return ExitUsage
	}
	return ExitFailed
}
