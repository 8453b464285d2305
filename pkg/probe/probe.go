// Package probe is a file-based liveness marker and the `live` command that
// checks it, so that an exec liveness probe works in images that have no
// shell and no cat.
//
// A service creates its Marker at start-up, keeps it fresh with a
// heartbeat while it is healthy and removes it after its drain (pkg/health
// does all three). The probe checks that the file exists and that it was
// refreshed recently: a file that merely exists cannot tell a wedged
// process from a working one.
package probe

import (
	"time"

	"github.com/drainwell/drainwell/internal/marker"
)

// Marker is the liveness marker file of one process; set its Path.
//
//   - Create writes it atomically (a temporary file created with O_EXCL
//     and mode 0644 in the same folder, renamed over Path), replacing a
//     stale marker of an earlier run; it refuses, with ErrNotRegular, to
//     write through a symlink or over anything but a regular file, and
//     refuses a folder that is itself a symlink. Every write and removal
//     happens in that folder (an os.Root), never through a link out of it.
//   - Touch refreshes it the same way; Heartbeat calls Touch periodically.
//   - Remove deletes it, idempotently, and never deletes through a symlink.
type Marker = marker.Marker

// StaleError reports a marker older than its allowed age; it matches
// ErrStale.
type StaleError = marker.StaleError

// Errors of Check, Live and Marker's methods. Test for them with errors.Is.
var (
	// ErrMissing: no marker, the service has not started or has drained.
	ErrMissing = marker.ErrMissing
	// ErrStale: the marker exists but its heartbeat stopped.
	ErrStale = marker.ErrStale
	// ErrNotRegular: something other than a regular file is at the path.
	ErrNotRegular = marker.ErrNotRegular
	// ErrForeign: the marker is owned by another user than the one
	// checking (the live probe runs as the container's user).
	ErrForeign = marker.ErrForeign
	// ErrTimeout: the check did not finish in time (a hung file system).
	ErrTimeout = marker.ErrTimeout
	// ErrUsage: a bad flag or environment variable; health.ExitCode maps it to 2.
	ErrUsage = marker.ErrUsage
)

// Defaults of the live command.
const (
	DefaultFile    = marker.DefaultFile
	DefaultMaxAge  = marker.DefaultMaxAge
	DefaultTimeout = marker.DefaultTimeout
)

// Check reports whether the marker at path is live at time now: nil when it
// is a regular file owned by the checking user and refreshed within maxAge,
// and not more than a second in the future (or merely exists, when maxAge
// is 0), else an error matching ErrMissing, ErrStale, ErrNotRegular or
// ErrForeign, or the file system's error. It makes a single lstat call.
func Check(path string, maxAge time.Duration, now time.Time) error {
	return marker.Check(path, maxAge, now)
}

// HeartbeatInterval is the refresh period for a marker checked with maxAge:
// a third of it, so two beats can be missed before the probe fails. It is
// 0, no heartbeat, when maxAge is 0 (existence only).
func HeartbeatInterval(maxAge time.Duration) time.Duration {
	return marker.HeartbeatInterval(maxAge)
}
