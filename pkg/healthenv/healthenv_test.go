package healthenv

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/drainwell/drainwell/internal/marker"
	"github.com/drainwell/drainwell/pkg/health"
)

var names = []string{"ADDR", "ADMIN_ADDR", "GRPC_ADDR", "DRAIN_DELAY", "SHUTDOWN_TIMEOUT", "IDLE_CLOSE",
	"CHECK_INTERVAL", "DRAIN_READINESS", "LIVE_FILE", "LIVE_MAX_AGE", "LEAVE_WINDOW"}

// setEnv sets vars and unsets every other name, restored after the test.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, k := range names {
		t.Setenv(k, "") // registers the restore
		if v, ok := vars[k]; ok {
			t.Setenv(k, v)
		} else if err := os.Unsetenv(k); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // the variable the error names; "" for valid
	}{
		{"nothing set", nil, ""},
		{"explicit defaults", map[string]string{"DRAIN_DELAY": "5s", "SHUTDOWN_TIMEOUT": "25s", "IDLE_CLOSE": "1s"}, ""},
		{"zeros take the defaults", map[string]string{"DRAIN_DELAY": "0", "SHUTDOWN_TIMEOUT": "0", "IDLE_CLOSE": "0"}, ""},
		{"no drain delay", map[string]string{"DRAIN_DELAY": "none"}, ""},
		{"negative drain delay", map[string]string{"DRAIN_DELAY": "-1s"}, "DRAIN_DELAY"},
		{"drain delay not a duration", map[string]string{"DRAIN_DELAY": "5"}, "DRAIN_DELAY"},
		{"drain delay empty", map[string]string{"DRAIN_DELAY": ""}, "DRAIN_DELAY"},
		{"delay beyond the default timeout", map[string]string{"DRAIN_DELAY": "30s"}, "DRAIN_DELAY"},
		{"idle close beyond the deadline", map[string]string{"IDLE_CLOSE": "20s"}, "IDLE_CLOSE"},
		{"negative timeout", map[string]string{"SHUTDOWN_TIMEOUT": "-1s"}, "SHUTDOWN_TIMEOUT"},
		{"timeout not a duration", map[string]string{"SHUTDOWN_TIMEOUT": "abc"}, "SHUTDOWN_TIMEOUT"},
		{"ipv6 address", map[string]string{"ADDR": "[::1]:8080"}, ""},
		{"port out of range", map[string]string{"ADDR": ":65536"}, "ADDR"},
		{"grpc and admin", map[string]string{"GRPC_ADDR": ":9090", "ADMIN_ADDR": "127.0.0.1:9091"}, ""},
		{"ports picked by the kernel", map[string]string{"ADDR": ":0", "GRPC_ADDR": ":0", "ADMIN_ADDR": ":0"}, ""},
		{"same port, other hosts", map[string]string{"ADDR": "127.0.0.1:8080", "GRPC_ADDR": "127.0.0.2:8080"}, ""},
		{"GRPC_ADDR not host:port", map[string]string{"GRPC_ADDR": "9090"}, "GRPC_ADDR"},
		{"GRPC_ADDR on ADDR's port", map[string]string{"ADDR": ":8080", "GRPC_ADDR": ":8080"}, "GRPC_ADDR"},
		{"ADMIN_ADDR on GRPC_ADDR's port", map[string]string{"GRPC_ADDR": ":9090", "ADMIN_ADDR": ":9090"}, "ADMIN_ADDR"},
		{"empty LIVE_FILE", map[string]string{"LIVE_FILE": ""}, "LIVE_FILE"},
		{"liveness existence only", map[string]string{"LIVE_MAX_AGE": "0"}, ""},
		{"liveness max age too small", map[string]string{"LIVE_MAX_AGE": "1ns"}, "LIVE_MAX_AGE"},
		{"check interval too small", map[string]string{"CHECK_INTERVAL": "1ns"}, "CHECK_INTERVAL"},
		{"readiness not-ready", map[string]string{"DRAIN_READINESS": "not-ready"}, ""},
		{"readiness unknown", map[string]string{"DRAIN_READINESS": "ready"}, "DRAIN_READINESS"},
		{"leave window", map[string]string{"LEAVE_WINDOW": "10s"}, ""},
		{"leave window none", map[string]string{"LEAVE_WINDOW": "none"}, ""},
		{"leave window empty", map[string]string{"LEAVE_WINDOW": ""}, ""},
		{"leave window zero", map[string]string{"LEAVE_WINDOW": "0"}, ""},
		{"negative leave window", map[string]string{"LEAVE_WINDOW": "-1s"}, "LEAVE_WINDOW"},
		{"leave window not a duration", map[string]string{"LEAVE_WINDOW": "10"}, "LEAVE_WINDOW"},
		{"leave window that fits", map[string]string{"LEAVE_WINDOW": "18s"}, ""},
		{"leave window past the steps' end", map[string]string{"LEAVE_WINDOW": "19s"}, "LEAVE_WINDOW"},
		{"leave window to the deadline", map[string]string{"LEAVE_WINDOW": "20s"}, "LEAVE_WINDOW"},
		{"leave window past a short deadline", map[string]string{"DRAIN_DELAY": "none", "SHUTDOWN_TIMEOUT": "5s", "LEAVE_WINDOW": "5s"}, "LEAVE_WINDOW"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			_, err := Load()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Load = %v, want nil", err)
				}
				return
			}
			if err == nil || !errors.Is(err, marker.ErrUsage) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("Load = %v, want one usage error naming %s", err, tt.want)
			}
			if health.ExitCode(err) != health.ExitUsage {
				t.Fatalf("ExitCode = %d, want %d", health.ExitCode(err), health.ExitUsage)
			}
		})
	}
}

// One meaning of zero: the environment's 0 and unset, and Go's zero, all
// take health's defaults (an empty LEAVE_WINDOW too); none is NoDrainDelay
// and NoLeaveWindow in both.
func TestZeroMeansTheDefault(t *testing.T) {
	for _, tt := range []struct {
		env        map[string]string
		wantDelay  time.Duration
		wantWindow time.Duration
	}{
		{nil, 0, 0},
		{map[string]string{"DRAIN_DELAY": "0", "LEAVE_WINDOW": "0"}, 0, 0},
		{map[string]string{"LEAVE_WINDOW": ""}, 0, 0},
		{map[string]string{"DRAIN_DELAY": "none", "LEAVE_WINDOW": "none"}, health.NoDrainDelay, health.NoLeaveWindow},
		{map[string]string{"DRAIN_DELAY": "2s", "LEAVE_WINDOW": "8s"}, 2 * time.Second, 8 * time.Second},
	} {
		setEnv(t, tt.env)
		s, err := Load()
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.Config()
		if cfg.DrainDelay != tt.wantDelay || cfg.LeaveWindow != tt.wantWindow || cfg.ShutdownTimeout != 0 || cfg.IdleClose != 0 {
			t.Fatalf("%v: Config = %+v, want DrainDelay %s, LeaveWindow %s and zeros (health's defaults)", tt.env, cfg, tt.wantDelay, tt.wantWindow)
		}
		if cfg.LiveFile != marker.DefaultFile || cfg.LiveMaxAge != marker.DefaultMaxAge {
			t.Fatalf("%v: marker %q %s, want `live`'s defaults", tt.env, cfg.LiveFile, cfg.LiveMaxAge)
		}
		if err := cfg.Validate(); err != nil {
			t.Fatalf("%v: health rejects what Load accepted: %v", tt.env, err)
		}
	}
}

// The marker's variables are read as `live` reads them (marker.Env), so a
// service and its liveness probe agree on the file.
func TestLiveVariablesAsLiveReadsThem(t *testing.T) {
	setEnv(t, map[string]string{"LIVE_FILE": "/tmp/x/live", "LIVE_MAX_AGE": "12s"})
	s, err := Load()
	if err != nil {
		t.Fatal(err)
	}
	path, maxAge, err := marker.Env(os.LookupEnv)
	if err != nil || path != s.LiveFile || maxAge != s.LiveMaxAge {
		t.Fatalf("live reads %q %s (%v), Load %q %s", path, maxAge, err, s.LiveFile, s.LiveMaxAge)
	}
}

// A zero Settings, built in Go, is valid and is health's zero Config.
func TestZeroSettings(t *testing.T) {
	if err := (Settings{LiveFile: marker.DefaultFile}).Validate(); err != nil {
		t.Fatalf("Validate = %v", err)
	}
	if cfg := (Settings{}).Config(); cfg.DrainReadiness != health.ReadyWhileServing || cfg.DrainDelay != 0 || cfg.LeaveWindow != 0 {
		t.Fatalf("Config = %+v, want health's zero Config", cfg)
	}
}

// LEAVE_WINDOW is bounded as health bounds Config.LeaveWindow: Load and
// Config.Validate agree on each side of the drain steps' end.
func TestLeaveWindowBoundAsHealthBoundsIt(t *testing.T) {
	for _, tt := range []struct{ delay, timeout, window string }{
		{"", "", "18s"}, {"", "", "18999ms"}, {"", "", "19s"},
		{"none", "5s", "4499ms"}, {"none", "5s", "4500ms"},
		{"2s", "60s", "56999ms"}, {"2s", "60s", "57s"},
	} {
		env := map[string]string{"LEAVE_WINDOW": tt.window}
		if tt.delay != "" {
			env["DRAIN_DELAY"] = tt.delay
		}
		if tt.timeout != "" {
			env["SHUTDOWN_TIMEOUT"] = tt.timeout
		}
		setEnv(t, env)
		s, loadErr := Load()
		s.LeaveWindow, _ = time.ParseDuration(tt.window) // what Load read, had it refused it
		healthErr := s.Config().Validate()
		if (loadErr == nil) != (healthErr == nil) {
			t.Errorf("%+v: Load = %v, but health.Config.Validate = %v", tt, loadErr, healthErr)
		}
	}
}
