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
	"github.com/drainwell/drainwell/pkg/probe"
)

// Config is the example service's environment.
type Config struct {
	Addr            string        `envconfig:"ADDR" default:":8080"`
	GRPCAddr        string        `envconfig:"GRPC_ADDR"`
	AdminAddr       string        `envconfig:"ADMIN_ADDR"`
	RedisAddr       string        `envconfig:"REDIS_ADDR"`
	RedisPassword   string        `envconfig:"REDIS_PASSWORD"`
	LiveFile        string        `envconfig:"LIVE_FILE" default:"/run/live/live"`
	LiveMaxAge      time.Duration `envconfig:"LIVE_MAX_AGE" default:"30s"`
	DrainDelay      time.Duration `envconfig:"DRAIN_DELAY" default:"5s"`
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT" default:"25s"`
	IdleClose       time.Duration `envconfig:"IDLE_CLOSE" default:"1s"`
	CheckInterval   time.Duration `envconfig:"CHECK_INTERVAL" default:"0"`
	WorkDelay       time.Duration `envconfig:"WORK_DELAY" default:"5s"`
	// MaxPending bounds the increments accepted and not yet applied
	// (DefaultMaxPending); beyond it POST /incr answers 503.
	MaxPending int64 `envconfig:"MAX_PENDING" default:"10000"`
	// DrainReadiness is /ready's policy during the drain: "serving"
	// (health.ReadyWhileServing, the default) or "not-ready"
	// (health.NotReadyAtSignal).
	DrainReadiness string `envconfig:"DRAIN_READINESS" default:"serving"`
}

// The smallest LIVE_MAX_AGE and CHECK_INTERVAL accepted (besides 0).
const (
	MinLiveMaxAge    = 100 * time.Millisecond
	MinCheckInterval = 100 * time.Millisecond
)

// readinessPolicies are DRAIN_READINESS's values.
var readinessPolicies = map[string]health.ReadinessPolicy{
	"serving":   health.ReadyWhileServing,
	"not-ready": health.NotReadyAtSignal,
}

func knownReadiness(v string) bool { _, ok := readinessPolicies[v]; return ok }

// ReadinessPolicy is DrainReadiness as pkg/health's policy.
func (c Config) ReadinessPolicy() health.ReadinessPolicy { return readinessPolicies[c.DrainReadiness] }

// LoadConfig reads Config from the environment and validates it. Its errors
// are one line, name the variable and match probe.ErrUsage.
func LoadConfig() (Config, error) {
	var c Config
	if err := envconfig.Process("", &c); err != nil {
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

// Validate checks what the drain needs to be safe.
func (c Config) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{probe.ErrUsage}, args...)...)
	}
	switch {
	case c.Addr == "":
		return bad("ADDR is empty")
	case !validAddr(c.Addr):
		return bad("ADDR=%q is not HOST:PORT", c.Addr)
	case c.GRPCAddr != "" && !validAddr(c.GRPCAddr):
		return bad("GRPC_ADDR=%q is not HOST:PORT", c.GRPCAddr)
	case c.AdminAddr != "" && !validAddr(c.AdminAddr):
		return bad("ADMIN_ADDR=%q is not HOST:PORT", c.AdminAddr)
	case strings.Contains(c.RedisAddr, "://") || strings.Contains(c.RedisAddr, "@"):
		// A URL may hold a password: never echo it.
		return bad("REDIS_ADDR is a URL, not HOST:PORT (put the password in REDIS_PASSWORD)")
	case c.RedisAddr != "" && !validAddr(c.RedisAddr):
		return bad("REDIS_ADDR=%q is not HOST:PORT", c.RedisAddr)
	case samePort(c.Addr, c.GRPCAddr):
		return bad("GRPC_ADDR=%q and ADDR=%q share a port", c.GRPCAddr, c.Addr)
	case samePort(c.Addr, c.AdminAddr):
		return bad("ADMIN_ADDR=%q and ADDR=%q share a port", c.AdminAddr, c.Addr)
	case samePort(c.GRPCAddr, c.AdminAddr):
		return bad("ADMIN_ADDR=%q and GRPC_ADDR=%q share a port", c.AdminAddr, c.GRPCAddr)
	case c.LiveFile == "":
		return bad("LIVE_FILE is empty")
	case c.LiveMaxAge < 0:
		return bad("LIVE_MAX_AGE=%s is negative", c.LiveMaxAge)
	case c.LiveMaxAge > 0 && c.LiveMaxAge < MinLiveMaxAge:
		// The heartbeat (a third of it) and the probe's exec must fit.
		return bad("LIVE_MAX_AGE=%s is below %s (0 checks existence only)", c.LiveMaxAge, MinLiveMaxAge)
	case c.DrainDelay < 0:
		return bad("DRAIN_DELAY=%s is negative", c.DrainDelay)
	case c.ShutdownTimeout <= 0:
		return bad("SHUTDOWN_TIMEOUT=%s must be positive", c.ShutdownTimeout)
	case c.IdleClose <= 0:
		return bad("IDLE_CLOSE=%s must be positive", c.IdleClose)
	case c.CheckInterval < 0:
		return bad("CHECK_INTERVAL=%s is negative", c.CheckInterval)
	case c.CheckInterval > 0 && c.CheckInterval < MinCheckInterval:
		// 1ns pinged Redis about 20,000 times a second.
		return bad("CHECK_INTERVAL=%s is below %s (0 checks on every /ready)", c.CheckInterval, MinCheckInterval)
	case c.WorkDelay < 0:
		return bad("WORK_DELAY=%s is negative", c.WorkDelay)
	case c.MaxPending <= 0:
		return bad("MAX_PENDING=%d must be positive", c.MaxPending)
	case !knownReadiness(c.DrainReadiness):
		return bad("DRAIN_READINESS=%q is neither serving nor not-ready", c.DrainReadiness)
	case c.DrainDelay >= c.ShutdownTimeout:
		return bad("DRAIN_DELAY=%s must be below SHUTDOWN_TIMEOUT=%s", c.DrainDelay, c.ShutdownTimeout)
	case c.DrainDelay+c.IdleClose >= c.ShutdownTimeout:
		return bad("DRAIN_DELAY=%s plus IDLE_CLOSE=%s must be below SHUTDOWN_TIMEOUT=%s", c.DrainDelay, c.IdleClose, c.ShutdownTimeout)
	case c.DrainDelay+c.WorkDelay >= c.ShutdownTimeout:
		// Work started by the last request of the drain delay could
		// never finish before the deadline.
		return bad("DRAIN_DELAY=%s plus WORK_DELAY=%s must be below SHUTDOWN_TIMEOUT=%s", c.DrainDelay, c.WorkDelay, c.ShutdownTimeout)
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

// samePort reports two set addresses with the same fixed port (port 0 picks
// a free one, and different hosts can share a port; the common mistake is
// the same port twice).
func samePort(a, b string) bool {
	if a == "" || b == "" {
		return false
	}
	ha, pa, _ := net.SplitHostPort(a)
	hb, pb, _ := net.SplitHostPort(b)
	return pa == pb && pa != "0" && (ha == hb || ha == "" || hb == "")
}
