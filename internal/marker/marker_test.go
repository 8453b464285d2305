package marker

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/drainwell/drainwell/internal/testutil"
)

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh")
	old := filepath.Join(dir, "old")
	link := filepath.Join(dir, "link")
	for _, p := range []string{fresh, old} {
		if err := (&Marker{Path: p}).Create(); err != nil {
			t.Fatal(err)
		}
	}
	now := time.Now()
	if err := os.Chtimes(old, now.Add(-47*time.Second), now.Add(-47*time.Second)); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fresh, link); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		path   string
		maxAge time.Duration
		want   error
	}{
		{"fresh", fresh, 30 * time.Second, nil},
		{"stale", old, 30 * time.Second, ErrStale},
		{"old but existence only", old, 0, nil},
		{"missing", filepath.Join(dir, "none"), 30 * time.Second, ErrMissing},
		{"missing folder", filepath.Join(dir, "no", "such"), 0, ErrMissing},
		{"folder", dir, 30 * time.Second, ErrNotRegular},
		{"symlink to a fresh marker", link, 30 * time.Second, ErrNotRegular},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.path, tt.maxAge, now)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Fatalf("Check = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestStaleErrorSaysHowOld(t *testing.T) {
	p := filepath.Join(t.TempDir(), "live")
	if err := (&Marker{Path: p}).Create(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	err = Check(p, 30*time.Second, fi.ModTime().Add(47*time.Second))
	var se *StaleError
	if !errors.As(err, &se) || se.Age != 47*time.Second {
		t.Fatalf("Check = %v, want a StaleError of 47s", err)
	}
	if want := "stale for 47s"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not say %q", err, want)
	}
}

func TestCreateReplacesStaleMarker(t *testing.T) {
	p := filepath.Join(t.TempDir(), "live")
	if err := os.WriteFile(p, []byte("earlier run\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-time.Hour)
	os.Chtimes(p, long, long)
	if err := Check(p, time.Minute, time.Now()); !errors.Is(err, ErrStale) {
		t.Fatalf("before Create: %v, want stale", err)
	}
	if err := (&Marker{Path: p}).Create(); err != nil {
		t.Fatal(err)
	}
	if err := Check(p, time.Minute, time.Now()); err != nil {
		t.Fatalf("after Create: %v", err)
	}
	fi, _ := os.Stat(p)
	if fi.Mode().Perm() != 0o644 {
		t.Fatalf("mode %v, want 0644", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("folder holds %d files, want only the marker (no temporary left)", len(entries))
	}
}

func TestSymlinkNeverWrittenOrRemovedThrough(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "precious")
	if err := os.WriteFile(target, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "live")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	m := &Marker{Path: link}
	if err := m.Create(); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Create through a symlink = %v, want ErrNotRegular", err)
	}
	if err := m.Remove(); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("Remove of a symlink = %v, want ErrNotRegular", err)
	}
	b, err := os.ReadFile(target)
	if err != nil || string(b) != "keep me" {
		t.Fatalf("target changed: %q, %v", b, err)
	}
	if _, err := os.Lstat(link); err != nil {
		t.Fatalf("symlink removed: %v", err)
	}
}

// A marker folder that is a symlink (someone could point it at another
// folder) is neither written nor removed through: Create, Touch and Remove
// fail and leave the target folder as it was. The control, a symlink
// higher up the path (as /var/run to /run), is followed.
func TestSymlinkedFolderNeverWrittenOrRemovedThrough(t *testing.T) {
	dir := t.TempDir()
	elsewhere := filepath.Join(dir, "elsewhere")
	if err := os.Mkdir(elsewhere, 0o700); err != nil {
		t.Fatal(err)
	}
	precious := filepath.Join(elsewhere, "live")
	if err := os.WriteFile(precious, []byte("keep me"), 0o600); err != nil {
		t.Fatal(err)
	}
	linked := filepath.Join(dir, "linked")
	if err := os.Symlink(elsewhere, linked); err != nil {
		t.Fatal(err)
	}
	m := &Marker{Path: filepath.Join(linked, "live")}
	for name, op := range map[string]func() error{"Create": m.Create, "Touch": m.Touch, "Remove": m.Remove} {
		if err := op(); err == nil || !strings.Contains(err.Error(), "is a symlink") {
			t.Errorf("%s through a symlinked folder = %v, want an error naming the symlink", name, err)
		}
	}
	entries, _ := os.ReadDir(elsewhere)
	if b, err := os.ReadFile(precious); err != nil || string(b) != "keep me" || len(entries) != 1 {
		t.Fatalf("the target folder changed: %q %v, %d entries", b, err, len(entries))
	}

	// Control: a symlink above the marker's folder.
	if err := os.Mkdir(filepath.Join(elsewhere, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	above := &Marker{Path: filepath.Join(linked, "sub", "live")}
	if err := above.Create(); err != nil {
		t.Fatalf("Create under a symlink higher up: %v", err)
	}
	if err := above.Remove(); err != nil {
		t.Fatalf("Remove under a symlink higher up: %v", err)
	}
}

func TestCreateErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
	}{
		{"empty path", ""},
		{"missing folder", filepath.Join(dir, "none", "live")},
		{"a folder", dir},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := (&Marker{Path: tt.path}).Create(); err == nil {
				t.Fatal("Create succeeded")
			}
		})
	}
}

func TestRemoveIsIdempotent(t *testing.T) {
	m := &Marker{Path: filepath.Join(t.TempDir(), "live")}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if err := m.Remove(); err != nil {
			t.Fatalf("Remove #%d: %v", i+1, err)
		}
	}
	if err := Check(m.Path, 0, time.Now()); !errors.Is(err, ErrMissing) {
		t.Fatalf("after Remove: %v, want missing", err)
	}
}

func TestHeartbeatRefreshesOnlyWhileHealthy(t *testing.T) {
	m := &Marker{Path: filepath.Join(t.TempDir(), "live")}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	long := time.Now().Add(-time.Hour)
	os.Chtimes(m.Path, long, long)

	healthy := make(chan bool, 1)
	healthy <- false
	calls := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		m.Heartbeat(ctx, time.Millisecond, func() bool {
			select {
			case calls <- struct{}{}:
			default:
			}
			h := <-healthy
			healthy <- h
			return h
		}, func(err error) { t.Error(err) })
	}()
	// Unhealthy: several beats pass and the marker stays stale.
	for range 3 {
		<-calls
	}
	if err := Check(m.Path, time.Minute, time.Now()); !errors.Is(err, ErrStale) {
		t.Fatalf("unhealthy heartbeat refreshed the marker: %v", err)
	}
	<-healthy
	healthy <- true
	testutil.WaitFor(t, "a fresh marker", func() bool { return Check(m.Path, time.Minute, time.Now()) == nil })
	cancel()
	<-done
}

func TestHeartbeatInterval(t *testing.T) {
	tests := []struct{ maxAge, want time.Duration }{
		{0, 0},
		{30 * time.Second, 10 * time.Second},
		{3 * time.Millisecond, time.Millisecond},
	}
	for _, tt := range tests {
		if got := HeartbeatInterval(tt.maxAge); got != tt.want {
			t.Errorf("HeartbeatInterval(%s) = %s, want %s", tt.maxAge, got, tt.want)
		}
	}
}

func TestEnv(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantPath string
		wantAge  time.Duration
		wantErr  bool
	}{
		{"defaults", nil, DefaultFile, DefaultMaxAge, false},
		{"set", map[string]string{"LIVE_FILE": "/x/l", "LIVE_MAX_AGE": "47s"}, "/x/l", 47 * time.Second, false},
		{"existence only", map[string]string{"LIVE_MAX_AGE": "0"}, DefaultFile, 0, false},
		{"bad duration", map[string]string{"LIVE_MAX_AGE": "abc"}, "", 0, true},
		{"no unit", map[string]string{"LIVE_MAX_AGE": "30"}, "", 0, true},
		{"set but empty age", map[string]string{"LIVE_MAX_AGE": ""}, "", 0, true},
		{"set but empty file", map[string]string{"LIVE_FILE": ""}, "", DefaultMaxAge, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path, age, err := Env(func(k string) (string, bool) { v, ok := tt.env[k]; return v, ok })
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tt.wantErr)
			}
			if err != nil {
				if !errors.Is(err, ErrUsage) {
					t.Fatalf("err %v does not match ErrUsage", err)
				}
				return
			}
			if path != tt.wantPath || age != tt.wantAge {
				t.Fatalf("Env = %q, %s; want %q, %s", path, age, tt.wantPath, tt.wantAge)
			}
		})
	}
}

func TestExitCode(t *testing.T) {
	tests := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{ErrMissing, 1},
		{errors.Join(errors.New("x"), ErrUsage), 2},
	}
	for _, tt := range tests {
		if got := ExitCode(tt.err); got != tt.want {
			t.Errorf("ExitCode(%v) = %d, want %d", tt.err, got, tt.want)
		}
	}
}

// A marker time in the future beyond the skew is not fresh (a frozen
// process after a clock step back, or a planted file); within it, it is.
func TestFutureMarkerIsStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "live")
	m := &Marker{Path: path}
	if err := m.Create(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		now     time.Time
		wantErr error
	}{
		{"refreshed now", fi.ModTime(), nil},
		{"within the skew", fi.ModTime().Add(-MaxClockSkew / 2), nil},
		{"an hour in the future", fi.ModTime().Add(-time.Hour), ErrStale},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := Check(path, 30*time.Second, tt.now); !errors.Is(err, tt.wantErr) || (tt.wantErr == nil) != (err == nil) {
				t.Fatalf("Check = %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// A marker another user owns says nothing of this process.
func TestForeignMarkerFails(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to give the file away")
	}
	path := filepath.Join(t.TempDir(), "live")
	if err := (&Marker{Path: path}).Create(); err != nil {
		t.Fatal(err)
	}
	if err := Check(path, time.Minute, time.Now()); err != nil {
		t.Fatalf("own marker: %v", err)
	}
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := Check(path, time.Minute, time.Now()); !errors.Is(err, ErrForeign) {
		t.Fatalf("Check of a marker owned by uid 65534 = %v, want ErrForeign", err)
	}
}

// A temporary file left by a process killed mid-heartbeat is removed at the
// next start; other files in the folder are not.
func TestCreateRemovesStaleTemps(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "live")
	stale := filepath.Join(dir, ".live.tmp.4242")
	others := []string{filepath.Join(dir, ".live.tmp.notapid"), filepath.Join(dir, ".other.tmp.4242"), filepath.Join(dir, "data")}
	for _, p := range append(others, stale) {
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := (&Marker{Path: path}).Create(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(stale); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("stale temporary file left: %v", err)
	}
	for _, p := range others {
		if _, err := os.Lstat(p); err != nil {
			t.Fatalf("%s removed: %v", p, err)
		}
	}
}
