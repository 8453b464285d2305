// Package marker is the liveness marker file and its check, with nothing
// but the standard library: the standalone probe binary links it, and its
// start-up cost is paid on every exec probe. pkg/probe re-exports it.
package marker

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Errors returned by Check and by Marker's methods. Test for them with
// errors.Is.
var (
	// ErrMissing means there is no marker: the service has not started,
	// or it has drained and removed it.
	ErrMissing = errors.New("marker missing")
	// ErrStale means the marker exists but its heartbeat stopped. The
	// returned error is a *StaleError that also says how old it is.
	ErrStale = errors.New("marker stale")
	// ErrNotRegular means something other than a regular file (a
	// symlink, a folder, a device) is at the marker's path. It is never
	// followed, written through or removed.
	ErrNotRegular = errors.New("not a regular file")
	// ErrForeign means the marker is not owned by the user the check runs
	// as: a file someone else planted says nothing of this process.
	ErrForeign = errors.New("marker owned by another user")
)

// MaxClockSkew is how far in the future a marker's time may be and still
// count as fresh: further, and the clock stepped back or the file was
// planted; either way it says nothing of the heartbeat.
const MaxClockSkew = time.Second

// StaleError reports a marker older than the allowed age.
type StaleError struct {
	Age    time.Duration // how long ago the marker was last refreshed
	MaxAge time.Duration // the age beyond which it counts as stale
}

func (e *StaleError) Error() string {
	if e.Age < 0 {
		return fmt.Sprintf("marker stale: refreshed %s in the future (a clock step, or not our heartbeat)", (-e.Age).Round(time.Second))
	}
	return fmt.Sprintf("marker stale for %s (max age %s)", e.Age.Round(time.Second), e.MaxAge)
}

// Is makes errors.Is(err, ErrStale) true for a *StaleError.
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// Check reports whether the marker at path is live at time now: nil when it
// is a regular file owned by the user Check runs as and refreshed within
// maxAge, and not more than MaxClockSkew in the future (or merely exists,
// when maxAge is 0); otherwise an error that matches ErrMissing, ErrStale,
// ErrNotRegular or ErrForeign, or the underlying file-system error. It
// makes a single lstat call.
func Check(path string, maxAge time.Duration, now time.Time) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("%s: %w", path, ErrMissing)
	}
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	if uid, ok := owner(fi); ok && uid != os.Geteuid() {
		return fmt.Errorf("%s: %w (uid %d, not %d)", path, ErrForeign, uid, os.Geteuid())
	}
	if maxAge > 0 {
		age := now.Sub(fi.ModTime())
		if age > maxAge || age < -MaxClockSkew {
			return fmt.Errorf("%s: %w", path, &StaleError{Age: age, MaxAge: maxAge})
		}
	}
	return nil
}

// Marker is the liveness marker file of one process. The zero value is not
// usable; set Path.
type Marker struct {
	// Path is where the marker lives. Its folder must exist and be
	// writable; in Kubernetes it is usually on an emptyDir volume.
	Path string
}

// Create writes the marker atomically: it writes a temporary file in the
// same folder, created with O_EXCL and mode 0644, and renames it over Path,
// so a concurrent Check never sees a half-written file. A stale marker left
// by an earlier run is replaced. Create refuses with ErrNotRegular if
// something other than a regular file is at Path (a symlink is never
// written through), and refuses a folder that is a symlink (openFolder).
func (m *Marker) Create() error {
	if m.Path == "" {
		return errors.New("marker path is empty")
	}
	dir, base, err := m.openFolder()
	if err != nil {
		return fmt.Errorf("create marker: %w", err)
	}
	defer dir.Close()
	fi, err := dir.Lstat(base)
	switch {
	case err == nil && !fi.Mode().IsRegular():
		return fmt.Errorf("create marker %s: %w", m.Path, ErrNotRegular)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("create marker: %w", err)
	}
	removeStaleTemps(dir, base)
	return m.writeIn(dir, base)
}

// openFolder opens the marker's folder as an os.Root, so that every write
// and removal happens in that folder and nowhere else: it refuses a folder
// that is itself a symlink (one someone could point elsewhere), and the
// Root follows no symlink out of it. Symlinks higher up the path (/var/run
// to /run) are followed.
func (m *Marker) openFolder() (*os.Root, string, error) {
	dir, base := filepath.Split(m.Path)
	dir = filepath.Clean(dir) // "" is "."
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, "", err
	}
	if fi.Mode()&fs.ModeSymlink != 0 {
		return nil, "", fmt.Errorf("marker folder %s is a symlink: not written or removed through", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, "", err
	}
	// The folder could have been swapped for a symlink since the Lstat.
	if now, err := root.Stat("."); err != nil || !os.SameFile(fi, now) {
		root.Close()
		return nil, "", fmt.Errorf("marker folder %s changed while it was opened", dir)
	}
	return root, base, nil
}

// removeStaleTemps removes the temporary files that an earlier process
// killed during a heartbeat (SIGKILL between create and rename) left
// beside the marker: regular files named as write names them, for another
// pid. Nothing else in the folder is touched.
func removeStaleTemps(dir *os.Root, base string) {
	entries, err := fs.ReadDir(dir.FS(), ".")
	if err != nil {
		return // write reports what is wrong with the folder
	}
	prefix, own := "."+base+".tmp.", "."+base+".tmp."+strconv.Itoa(os.Getpid())
	for _, e := range entries {
		name := e.Name()
		if !strings.HasPrefix(name, prefix) || name == own || !e.Type().IsRegular() {
			continue
		}
		if _, err := strconv.Atoi(strings.TrimPrefix(name, prefix)); err == nil {
			_ = dir.Remove(name) // best effort: a leftover, not the marker
		}
	}
}

// Touch refreshes the marker, again by an atomic replace, so that a symlink
// planted at Path is replaced rather than written through. It is what a
// heartbeat calls.
func (m *Marker) Touch() error {
	dir, base, err := m.openFolder()
	if err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	defer dir.Close()
	return m.writeIn(dir, base)
}

// writeIn writes the marker base in dir.
func (m *Marker) writeIn(dir *os.Root, base string) error {
	// The pid makes the temporary name unique between processes; O_EXCL
	// makes it safe against a file planted under that name.
	tmp := "." + base + ".tmp." + strconv.Itoa(os.Getpid())
	// 0644: the marker holds only a pid; a probe running as another user
	// may read it, though Check fails a marker it does not own. O_EXCL
	// and O_NOFOLLOW: never through a planted file or link.
	f, err := dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644) // #nosec G302 -- see above
	if errors.Is(err, fs.ErrExist) {
		// Left by a crash of this pid's predecessor (pids repeat in
		// containers): remove it and try once more.
		if err = dir.Remove(tmp); err == nil {
			f, err = dir.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o644) // #nosec G302 -- as above
		}
	}
	if err != nil {
		return fmt.Errorf("write marker: %w", err)
	}
	_, err = f.WriteString(strconv.Itoa(os.Getpid()) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = dir.Rename(tmp, base)
	}
	if err != nil {
		_ = dir.Remove(tmp) // best effort: the write's error is the one to report
		return fmt.Errorf("write marker: %w", err)
	}
	return nil
}

// Remove deletes the marker. It is idempotent: a missing marker (or
// folder) is not an error. Anything other than a regular file at Path is
// left alone and reported with ErrNotRegular; a folder that is a symlink
// is not removed through.
func (m *Marker) Remove() error {
	dir, base, err := m.openFolder()
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove marker: %w", err)
	}
	defer dir.Close()
	fi, err := dir.Lstat(base)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("remove marker: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("remove marker %s: %w", m.Path, ErrNotRegular)
	}
	if err := dir.Remove(base); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove marker: %w", err)
	}
	return nil
}

// Heartbeat refreshes the marker every interval until ctx is done, calling
// healthy first when it is not nil: while healthy returns false the marker
// is not refreshed and goes stale, so the liveness probe fails. A failed
// refresh is passed to onError (when not nil) and retried at the next beat.
func (m *Marker) Heartbeat(ctx context.Context, interval time.Duration, healthy func() bool, onError func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if healthy != nil && !healthy() {
			continue
		}
		if err := m.Touch(); err != nil && onError != nil {
			onError(err)
		}
	}
}

// HeartbeatInterval is the refresh period for a marker checked with maxAge:
// a third of it, so that two beats can be missed before the probe fails. It
// is 0, no heartbeat, when maxAge is 0 (existence only).
func HeartbeatInterval(maxAge time.Duration) time.Duration {
	if maxAge <= 0 {
		return 0
	}
	return max(maxAge/3, time.Millisecond)
}

// ErrUsage marks an error in how a command was called or configured (a bad
// flag or environment variable): ExitCode maps it to 2.
var ErrUsage = errors.New("invalid")

// ErrTimeout means the check did not finish within its time bound, as on a
// hung file system.
var ErrTimeout = errors.New("check timed out")

// Defaults of the live check.
const (
	DefaultFile    = "/run/live/live"
	DefaultMaxAge  = 30 * time.Second
	DefaultTimeout = time.Second
)

// Live checks the marker at path at time.Now(), giving up with ErrTimeout
// after timeout: kubelet does not kill an exec probe that times out, so a
// probe stuck on a hung file system would pile up processes.
func Live(ctx context.Context, path string, maxAge, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Check(path, maxAge, time.Now()) }()
	select {
	case err := <-done:
		return err
	case <-ctx.Done():
		return fmt.Errorf("%s: %w after %s", path, ErrTimeout, timeout)
	}
}

// ExitCode maps an error of a command to its exit status: 0 for nil, 2 for
// ErrUsage, 1 for anything else (a failed check).
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	default:
		return 1
	}
}

// Env is the live check's environment, LIVE_FILE and LIVE_MAX_AGE, read
// with lookupEnv (os.LookupEnv in production) and without envconfig, for
// the standalone probe. pkg/probe reads the same variables with envconfig;
// a test keeps the two in step. As there, a variable that is set but
// empty is not replaced by its default.
func Env(lookupEnv func(string) (string, bool)) (path string, maxAge time.Duration, err error) {
	path, maxAge = DefaultFile, DefaultMaxAge
	if v, ok := lookupEnv("LIVE_FILE"); ok {
		path = v
	}
	if v, ok := lookupEnv("LIVE_MAX_AGE"); ok {
		if maxAge, err = time.ParseDuration(v); err != nil {
			return path, 0, fmt.Errorf("%w: LIVE_MAX_AGE=%q: %v", ErrUsage, v, err)
		}
	}
	return path, maxAge, nil
}

// Validate reports a live configuration that cannot work, naming the
// variable.
func Validate(path string, maxAge time.Duration) error {
	if path == "" {
		return fmt.Errorf("%w: LIVE_FILE is empty", ErrUsage)
	}
	if maxAge < 0 {
		return fmt.Errorf("%w: LIVE_MAX_AGE=%s is negative", ErrUsage, maxAge)
	}
	return nil
}
