package service

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/drainwell/drainwell/pkg/health"
	"github.com/drainwell/drainwell/pkg/healthenv"
	"github.com/drainwell/drainwell/pkg/probe"
)

// Config is the example service's environment: the drain's settings, read
// by the library (healthenv: ADDR, GRPC_ADDR, ADMIN_ADDR, DRAIN_DELAY,
// SHUTDOWN_TIMEOUT, IDLE_CLOSE, CHECK_INTERVAL, DRAIN_READINESS, LIVE_FILE,
// LIVE_MAX_AGE), and the app's own.
type Config struct {
	healthenv.Settings
	App
}

// App is the app's own environment.
type App struct {
	RedisAddr     string        `envconfig:"REDIS_ADDR"`
	RedisPassword string        `envconfig:"REDIS_PASSWORD"`
	WorkDelay     time.Duration `envconfig:"WORK_DELAY" default:"5s"`
	// MaxPending bounds the increments accepted and not yet applied
	// (DefaultMaxPending); beyond it POST /incr answers 503.
	MaxPending int64 `envconfig:"MAX_PENDING" default:"10000"`
}

// LoadConfig reads Config from the environment and validates it. Its errors
// are one line, name the variable and match probe.ErrUsage.
func LoadConfig() (Config, error) {
	var c Config
	var err error
	if c.Settings, err = healthenv.Load(); err != nil {
		return c, err
	}
	if err := envconfig.Process("", &c.App); err != nil {
		return c, envError(err)
	}
	return c, c.Validate()
}

// envError turns an envconfig error into one line that names the variable
// and its value and matches probe.ErrUsage.
func envError(err error) error {
	if pe, ok := errors.AsType[*envconfig.ParseError](err); ok {
		return fmt.Errorf("%w: %s=%q: %v", probe.ErrUsage, pe.KeyName, pe.Value, pe.Err)
	}
	return fmt.Errorf("%w: %v", probe.ErrUsage, err)
}

// Validate checks what the drain needs to be safe: the library's settings,
// then the app's.
func (c Config) Validate() error {
	if err := c.Settings.Validate(); err != nil {
		return err
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{probe.ErrUsage}, args...)...)
	}
	timeout := c.ShutdownTimeout
	if timeout == 0 {
		timeout = health.DefaultShutdownTimeout
	}
	delay := c.DrainDelay
	if delay == 0 {
		delay = health.DefaultDrainDelay
	}
	addr := c.Addr
	if addr == "" {
		addr = health.DefaultAddr // the app has a handler: it listens there
	}
	switch {
	case c.GRPCAddr != "" && samePort(addr, c.GRPCAddr):
		return bad("GRPC_ADDR=%q and ADDR=%q share a port", c.GRPCAddr, addr)
	case c.AdminAddr != "" && samePort(addr, c.AdminAddr):
		return bad("ADMIN_ADDR=%q and ADDR=%q share a port", c.AdminAddr, addr)
	case strings.Contains(c.RedisAddr, "://") || strings.Contains(c.RedisAddr, "@"):
		// A URL may hold a password: never echo it.
		return bad("REDIS_ADDR is a URL, not HOST:PORT (put the password in REDIS_PASSWORD)")
	case c.RedisAddr != "" && !validAddr(c.RedisAddr):
		return bad("REDIS_ADDR=%q is not HOST:PORT", c.RedisAddr)
	case c.WorkDelay < 0:
		return bad("WORK_DELAY=%s is negative", c.WorkDelay)
	case c.MaxPending <= 0:
		return bad("MAX_PENDING=%d must be positive", c.MaxPending)
	case max(delay, 0)+c.WorkDelay >= timeout:
		// Work started by the last request of the drain delay could
		// never finish before the deadline.
		return bad("DRAIN_DELAY=%s plus WORK_DELAY=%s must be below SHUTDOWN_TIMEOUT=%s", delay, c.WorkDelay, timeout)
	}
	return nil
}

func validAddr(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n >= 0 && n <= 65535
}

// samePort reports two set addresses with the same fixed port.
func samePort(a, b string) bool {
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	return pa == pb && pa != "0" && (ha == hb || ha == "" || hb == "")
}
