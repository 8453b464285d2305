package service

import (
	"errors"
	"strings"
	"testing"

	"github.com/drainwell/drainwell/pkg/probe"
)

var durationVars = []string{"LIVE_MAX_AGE", "DRAIN_DELAY", "SHUTDOWN_TIMEOUT", "IDLE_CLOSE", "WORK_DELAY", "CHECK_INTERVAL"}

// setEnv sets the app's variables for one case, and unsets the others.
func setEnv(t *testing.T, vars map[string]string) {
	t.Helper()
	for _, k := range append([]string{"ADDR", "GRPC_ADDR", "ADMIN_ADDR", "REDIS_ADDR", "REDIS_PASSWORD", "LIVE_FILE", "DRAIN_READINESS", "MAX_PENDING"}, durationVars...) {
		t.Setenv(k, "") // registers the restore
		if v, ok := vars[k]; ok {
			t.Setenv(k, v)
		} else {
			unsetenv(t, k)
		}
	}
}

func TestLoadConfig(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string // "" for valid
	}{
		{"defaults", nil, ""},
		{"explicit defaults", map[string]string{"DRAIN_DELAY": "5s", "SHUTDOWN_TIMEOUT": "25s", "WORK_DELAY": "5s"}, ""},
		{"no drain delay", map[string]string{"DRAIN_DELAY": "none"}, ""},
		{"zero drain delay: the default", map[string]string{"DRAIN_DELAY": "0"}, ""},
		{"ipv6 address", map[string]string{"ADDR": "[::1]:8080"}, ""},
		{"empty ADDR: the default", map[string]string{"ADDR": ""}, ""},
		{"port out of range", map[string]string{"ADDR": ":65536"}, "ADDR"},
		{"grpc and admin", map[string]string{"GRPC_ADDR": ":9090", "ADMIN_ADDR": "127.0.0.1:9091"}, ""},
		{"ports picked by the kernel", map[string]string{"ADDR": ":0", "GRPC_ADDR": ":0", "ADMIN_ADDR": ":0"}, ""},
		{"same port, other hosts", map[string]string{"ADDR": "127.0.0.1:8080", "GRPC_ADDR": "127.0.0.2:8080"}, ""},
		{"GRPC_ADDR not host:port", map[string]string{"GRPC_ADDR": "9090"}, "GRPC_ADDR"},
		{"GRPC_ADDR port out of range", map[string]string{"GRPC_ADDR": ":70000"}, "GRPC_ADDR"},
		{"ADMIN_ADDR not host:port", map[string]string{"ADMIN_ADDR": "localhost"}, "ADMIN_ADDR"},
		{"GRPC_ADDR on ADDR's port", map[string]string{"GRPC_ADDR": ":8080"}, "GRPC_ADDR"},
		{"ADMIN_ADDR on ADDR's port", map[string]string{"ADMIN_ADDR": "127.0.0.1:8080"}, "ADMIN_ADDR"},
		{"ADMIN_ADDR on GRPC_ADDR's port", map[string]string{"GRPC_ADDR": ":9090", "ADMIN_ADDR": ":9090"}, "ADMIN_ADDR"},
		{"empty LIVE_FILE", map[string]string{"LIVE_FILE": ""}, "LIVE_FILE"},
		{"work cannot finish", map[string]string{"WORK_DELAY": "21s"}, "WORK_DELAY"},
		{"idle close beyond the deadline", map[string]string{"IDLE_CLOSE": "20s"}, "IDLE_CLOSE"},
		{"zero idle close: the default", map[string]string{"IDLE_CLOSE": "0"}, ""},
		{"REDIS_ADDR host:port", map[string]string{"REDIS_ADDR": "redis:6379"}, ""},
		{"REDIS_ADDR without a port", map[string]string{"REDIS_ADDR": "nocolon"}, "REDIS_ADDR"},
		{"REDIS_ADDR a URL with a password", map[string]string{"REDIS_ADDR": "redis://:secret@redis:6379"}, "REDIS_ADDR is a URL"},
		{"REDIS_ADDR user:password@", map[string]string{"REDIS_ADDR": "app:secret@redis:6379"}, "REDIS_ADDR is a URL"},
		{"readiness serving", map[string]string{"DRAIN_READINESS": "serving"}, ""},
		{"readiness not-ready", map[string]string{"DRAIN_READINESS": "not-ready"}, ""},
		{"readiness unknown", map[string]string{"DRAIN_READINESS": "ready"}, "DRAIN_READINESS"},
		{"readiness empty: serving", map[string]string{"DRAIN_READINESS": ""}, ""},
		{"liveness existence only", map[string]string{"LIVE_MAX_AGE": "0"}, ""},
		{"liveness max age too small", map[string]string{"LIVE_MAX_AGE": "1ns"}, "LIVE_MAX_AGE"},
		{"liveness max age at the minimum", map[string]string{"LIVE_MAX_AGE": "100ms"}, ""},
		{"check interval too small", map[string]string{"CHECK_INTERVAL": "1ns"}, "CHECK_INTERVAL"},
		{"check interval", map[string]string{"CHECK_INTERVAL": "1s"}, ""},
		{"max pending", map[string]string{"MAX_PENDING": "50"}, ""},
		{"max pending zero", map[string]string{"MAX_PENDING": "0"}, "MAX_PENDING"},
		{"max pending negative", map[string]string{"MAX_PENDING": "-1"}, "MAX_PENDING"},
		{"max pending not a number", map[string]string{"MAX_PENDING": "lots"}, "MAX_PENDING"},
	}
	// Every duration variable: empty, negative, huge, no unit, wrong type.
	for _, k := range durationVars {
		for _, v := range []string{"", "-1s", "9999999999h", "5", "abc", "1.5.3s", "5 s"} {
			tests = append(tests, struct {
				name string
				env  map[string]string
				want string
			}{k + "=" + v, map[string]string{k: v}, k})
		}
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			setEnv(t, tt.env)
			_, err := LoadConfig()
			if tt.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !errors.Is(err, probe.ErrUsage) || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("LoadConfig = %v, want one usage line naming %s", err, tt.want)
			}
			if strings.Contains(err.Error(), "secret") {
				t.Fatalf("LoadConfig = %v: the error shows the password", err)
			}
		})
	}
}

// FuzzConfig: whatever the environment, LoadConfig either accepts a
// configuration that can drain (the invariants below) or says why in one
// line matching probe.ErrUsage.
func FuzzConfig(f *testing.F) {
	f.Add(":8080", "5s", "25s", "1s", "5s", "30s")
	f.Add("", "", "", "", "", "")
	f.Add(":1", "24s", "25s", "999ms", "0", "0")
	f.Fuzz(func(t *testing.T, addr, drain, timeout, idle, work, maxAge string) {
		setEnv(t, map[string]string{"ADDR": addr, "DRAIN_DELAY": drain, "SHUTDOWN_TIMEOUT": timeout,
			"IDLE_CLOSE": idle, "WORK_DELAY": work, "LIVE_MAX_AGE": maxAge})
		c, err := LoadConfig()
		if err != nil {
			if !errors.Is(err, probe.ErrUsage) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: not one usage line", err)
			}
			return
		}
		if c.DrainDelay < 0 || c.DrainDelay+c.IdleClose >= c.ShutdownTimeout || c.DrainDelay+c.WorkDelay >= c.ShutdownTimeout || c.LiveMaxAge < 0 {
			t.Fatalf("accepted a configuration that cannot drain: %+v", c)
		}
	})
}
