package probe_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/drainwell/drainwell/internal/marker"
	"github.com/drainwell/drainwell/pkg/health"
	"github.com/drainwell/drainwell/pkg/probe"
)

// runLive runs the live command as a service embeds it and returns its exit
// status and error text.
func runLive(t *testing.T, args ...string) (int, string) {
	t.Helper()
	root := &cobra.Command{Use: "app", SilenceErrors: true, SilenceUsage: true}
	root.AddCommand(probe.Command())
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"live"}, args...))
	err := root.ExecuteContext(context.Background())
	msg := out.String()
	if err != nil {
		msg += err.Error()
	}
	return health.ExitCode(err), msg // one ExitCode for serve and live
}

func TestLiveCommand(t *testing.T) {
	dir := t.TempDir()
	fresh := filepath.Join(dir, "fresh")
	stale := filepath.Join(dir, "stale")
	for _, p := range []string{fresh, stale} {
		if err := (&probe.Marker{Path: p}).Create(); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-47 * time.Second)
	os.Chtimes(stale, old, old)

	tests := []struct {
		name     string
		env      map[string]string
		args     []string
		wantCode int
		wantMsg  string
	}{
		{"fresh from env", map[string]string{"LIVE_FILE": fresh}, nil, 0, ""},
		{"fresh from flag", nil, []string{"--file", fresh}, 0, ""},
		{"flag beats env", map[string]string{"LIVE_FILE": "/nonexistent"}, []string{"--file", fresh}, 0, ""},
		{"missing", map[string]string{"LIVE_FILE": filepath.Join(dir, "none")}, nil, 1, "marker missing"},
		{"stale", map[string]string{"LIVE_FILE": stale}, nil, 1, "stale for 47s"},
		{"stale but existence only", map[string]string{"LIVE_FILE": stale, "LIVE_MAX_AGE": "0"}, nil, 0, ""},
		{"stale within a longer max age", map[string]string{"LIVE_FILE": stale}, []string{"--max-age=1m"}, 0, ""},
		{"bad env", map[string]string{"LIVE_FILE": fresh, "LIVE_MAX_AGE": "abc"}, nil, 2, "LIVE_MAX_AGE"},
		{"bad env replaced by flag", map[string]string{"LIVE_FILE": fresh, "LIVE_MAX_AGE": "abc"}, []string{"--max-age=1m"}, 0, ""},
		{"negative max age", map[string]string{"LIVE_FILE": fresh}, []string{"--max-age=-1s"}, 2, "negative"},
		{"bad flag", nil, []string{"--max-age=soon"}, 2, "max-age"},
		{"unknown flag", nil, []string{"--nope"}, 2, "nope"},
		{"stray argument", map[string]string{"LIVE_FILE": fresh}, []string{"extra"}, 2, "unknown command"},
		{"empty file", map[string]string{"LIVE_FILE": ""}, nil, 2, "LIVE_FILE is empty"},
		{"zero timeout", map[string]string{"LIVE_FILE": fresh}, []string{"--timeout=0"}, 2, "timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, k := range []string{"LIVE_FILE", "LIVE_MAX_AGE"} {
				if v, ok := tt.env[k]; ok {
					t.Setenv(k, v)
				} else {
					t.Setenv(k, "x") // registers restore
					os.Unsetenv(k)
				}
			}
			code, msg := runLive(t, tt.args...)
			if code != tt.wantCode || !strings.Contains(msg, tt.wantMsg) {
				t.Fatalf("exit %d, %q; want %d and %q", code, msg, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// The standalone probe reads LIVE_FILE and LIVE_MAX_AGE without envconfig;
// this keeps it in step with the command's envconfig reading.
func TestEnvParityWithStandaloneProbe(t *testing.T) {
	values := []map[string]string{
		{},
		{"LIVE_FILE": "/a/b", "LIVE_MAX_AGE": "15s"},
		{"LIVE_MAX_AGE": "0"},
		{"LIVE_MAX_AGE": "1h30m"},
		{"LIVE_MAX_AGE": "abc"},
		{"LIVE_MAX_AGE": "30"},
		{"LIVE_MAX_AGE": ""},
		{"LIVE_MAX_AGE": "-5s"},
		{"LIVE_FILE": ""},
	}
	for _, env := range values {
		for _, k := range []string{"LIVE_FILE", "LIVE_MAX_AGE"} {
			if v, ok := env[k]; ok {
				t.Setenv(k, v)
			} else {
				t.Setenv(k, "x")
				os.Unsetenv(k)
			}
		}
		c, cerr := probe.LoadLiveConfig()
		path, age, merr := marker.Env(os.LookupEnv)
		if merr == nil {
			merr = marker.Validate(path, age)
		}
		if (cerr == nil) != (merr == nil) || (cerr == nil && (c.File != path || c.MaxAge != age)) {
			t.Errorf("env %v: envconfig %+v, %v; standalone %q %s, %v", env, c, cerr, path, age, merr)
		}
		if cerr != nil && (!errors.Is(cerr, probe.ErrUsage) || !errors.Is(merr, probe.ErrUsage)) {
			t.Errorf("env %v: errors %v / %v do not both match ErrUsage", env, cerr, merr)
		}
	}
}
