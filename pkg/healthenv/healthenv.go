// Package healthenv reads a drain's settings from the environment, by the
// names deploy/ sets and `drainwell vet` reads, so that a service embedding
// pkg/health is configured by its manifest as the example is:
//
//	settings, err := healthenv.Load() // ADDR, DRAIN_DELAY, ... as below
//	if err != nil {
//		return err // one line naming the variable; health.ExitCode: 2
//	}
//	cfg := settings.Config() // then set what the environment does not say
//	cfg.Logger = log
//	srv := health.New(cfg, mux)
//
// Zero means the same here as in health.Config: the default. A variable
// unset, or set to 0, takes the default. DRAIN_DELAY=none means no drain
// delay (health.NoDrainDelay). LEAVE_WINDOW=none asks every long-lived
// request to leave at once (health.NoLeaveWindow). LEAVE_WINDOW set but
// empty takes the default too.
//
//	variable          health.Config     default
//	ADDR              Addr              :8080 with a handler; none without
//	ADMIN_ADDR        (AddAdmin's)      none
//	GRPC_ADDR         (grpcdrain's)     none
//	DRAIN_DELAY       DrainDelay        5s; none: no delay
//	SHUTDOWN_TIMEOUT  ShutdownTimeout   25s
//	IDLE_CLOSE        IdleClose         1s
//	CHECK_INTERVAL    CheckInterval     0: checks run on each /ready
//	DRAIN_READINESS   DrainReadiness    serving; not-ready: 503 at the signal
//	LEAVE_WINDOW      LeaveWindow       half the time left after the delay; none: all at once
//	LIVE_FILE         LiveFile          /run/live/live (as `live` reads it)
//	LIVE_MAX_AGE      LiveMaxAge        30s; 0: existence only
package healthenv

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/kelseyhightower/envconfig"

	"github.com/drainwell/drainwell/internal/marker"
	"github.com/drainwell/drainwell/pkg/health"
)

// Settings are a drain's settings as the environment gives them.
type Settings struct {
	Addr            string        `envconfig:"ADDR"`
	AdminAddr       string        `envconfig:"ADMIN_ADDR"`
	GRPCAddr        string        `envconfig:"GRPC_ADDR"`
	DrainDelay      time.Duration `envconfig:"DRAIN_DELAY" ignored:"true"` // read by Load: "none" is health.NoDrainDelay
	ShutdownTimeout time.Duration `envconfig:"SHUTDOWN_TIMEOUT"`
	IdleClose       time.Duration `envconfig:"IDLE_CLOSE"`
	CheckInterval   time.Duration `envconfig:"CHECK_INTERVAL"`
	DrainReadiness  string        `envconfig:"DRAIN_READINESS" default:"serving"`
	LeaveWindow     time.Duration `envconfig:"LEAVE_WINDOW" ignored:"true"` // read by Load: "none" is health.NoLeaveWindow
	LiveFile        string        `envconfig:"LIVE_FILE" default:"/run/live/live"`
	LiveMaxAge      time.Duration `envconfig:"LIVE_MAX_AGE" default:"30s"`
}

// The smallest LIVE_MAX_AGE and CHECK_INTERVAL accepted, besides 0: the
// marker's heartbeat (a third of its age) and the probe's exec must fit,
// and a check every nanosecond pinged a database 20,000 times a second.
const (
	MinLiveMaxAge    = 100 * time.Millisecond
	MinCheckInterval = 100 * time.Millisecond
)

// readinessPolicies are DRAIN_READINESS's values.
var readinessPolicies = map[string]health.ReadinessPolicy{
	"serving":   health.ReadyWhileServing,
	"not-ready": health.NotReadyAtSignal,
}

// Load reads the Settings from the process's environment and validates
// them. Its errors are one line, name the variable and match
// probe.ErrUsage (health.ExitCode: 2).
func Load() (Settings, error) {
	var s Settings
	if err := envconfig.Process("", &s); err != nil {
		return s, envError(err)
	}
	var durations struct {
		Delay  drainDelay  `envconfig:"DRAIN_DELAY"`
		Window leaveWindow `envconfig:"LEAVE_WINDOW"`
	}
	if err := envconfig.Process("", &durations); err != nil {
		return s, envError(err)
	}
	s.DrainDelay = time.Duration(durations.Delay)
	s.LeaveWindow = time.Duration(durations.Window)
	return s, s.Validate()
}

// drainDelay is DRAIN_DELAY: a duration, or "none".
type drainDelay time.Duration

func (d *drainDelay) Decode(v string) error {
	if v == "none" {
		*d = drainDelay(health.NoDrainDelay)
		return nil
	}
	t, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%w (a duration, or none)", err)
	}
	if t < 0 {
		return errors.New("negative (none for no delay)")
	}
	*d = drainDelay(t)
	return nil
}

// leaveWindow is LEAVE_WINDOW: a duration, or "none"; empty is the
// default.
type leaveWindow time.Duration

func (w *leaveWindow) Decode(v string) error {
	switch v {
	case "none":
		*w = leaveWindow(health.NoLeaveWindow)
		return nil
	case "":
		*w = 0
		return nil
	}
	t, err := time.ParseDuration(v)
	if err != nil {
		return fmt.Errorf("%w (a duration, or none)", err)
	}
	if t < 0 {
		return errors.New("negative (none to ask all at once)")
	}
	*w = leaveWindow(t)
	return nil
}

// envError turns an envconfig error into one line that names the variable
// and its value.
func envError(err error) error {
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s=%q: %v", marker.ErrUsage, pe.KeyName, pe.Value, pe.Err)
	}
	return fmt.Errorf("%w: %v", marker.ErrUsage, err)
}

// Config returns the health.Config the Settings say. The addresses of the
// admin listener and the gRPC server are the service's to open (AddAdmin,
// grpcdrain.New); Logger, Signals, OnReadyChange and the rest are the
// service's to set.
func (s Settings) Config() health.Config {
	return health.Config{
		Addr:            s.Addr,
		DrainDelay:      s.DrainDelay,
		ShutdownTimeout: s.ShutdownTimeout,
		IdleClose:       s.IdleClose,
		CheckInterval:   s.CheckInterval,
		DrainReadiness:  readinessPolicies[s.DrainReadiness],
		LeaveWindow:     s.LeaveWindow,
		LiveFile:        s.LiveFile,
		LiveMaxAge:      s.LiveMaxAge,
	}
}

// Validate reports settings that cannot drain safely, in one line naming
// the variable; its errors match probe.ErrUsage.
func (s Settings) Validate() error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{marker.ErrUsage}, args...)...)
	}
	delay, timeout, idle := s.DrainDelay, s.ShutdownTimeout, s.IdleClose
	if delay == 0 {
		delay = health.DefaultDrainDelay
	}
	if timeout == 0 {
		timeout = health.DefaultShutdownTimeout
	}
	if idle == 0 {
		idle = health.DefaultIdleClose
	}
	addrs := []struct{ name, addr string }{{"ADDR", s.Addr}, {"GRPC_ADDR", s.GRPCAddr}, {"ADMIN_ADDR", s.AdminAddr}}
	for i, a := range addrs {
		if a.addr != "" && !validAddr(a.addr) {
			return bad("%s=%q is not HOST:PORT", a.name, a.addr)
		}
		for _, b := range addrs[:i] {
			if samePort(a.addr, b.addr) {
				return bad("%s=%q and %s=%q share a port", a.name, a.addr, b.name, b.addr)
			}
		}
	}
	switch _, known := readinessPolicies[s.DrainReadiness]; {
	case !known && s.DrainReadiness != "": // "" is serving, as in a zero Settings
		return bad("DRAIN_READINESS=%q is neither serving nor not-ready", s.DrainReadiness)
	case s.ShutdownTimeout < 0:
		return bad("SHUTDOWN_TIMEOUT=%s is negative", s.ShutdownTimeout)
	case s.IdleClose < 0:
		return bad("IDLE_CLOSE=%s is negative", s.IdleClose)
	case s.CheckInterval < 0:
		return bad("CHECK_INTERVAL=%s is negative", s.CheckInterval)
	case s.CheckInterval > 0 && s.CheckInterval < MinCheckInterval:
		return bad("CHECK_INTERVAL=%s is below %s (0 checks on every /ready)", s.CheckInterval, MinCheckInterval)
	case s.LiveFile == "":
		return bad("LIVE_FILE is empty")
	case s.LiveMaxAge < 0:
		return bad("LIVE_MAX_AGE=%s is negative", s.LiveMaxAge)
	case s.LiveMaxAge > 0 && s.LiveMaxAge < MinLiveMaxAge:
		return bad("LIVE_MAX_AGE=%s is below %s (0 checks existence only)", s.LiveMaxAge, MinLiveMaxAge)
	case max(delay, 0) >= timeout:
		return bad("DRAIN_DELAY=%s must be below SHUTDOWN_TIMEOUT=%s", delay, timeout)
	case max(delay, 0)+idle >= timeout:
		return bad("DRAIN_DELAY=%s plus IDLE_CLOSE=%s must be below SHUTDOWN_TIMEOUT=%s", delay, idle, timeout)
	case s.LeaveWindow > 0 && max(delay, 0)+s.LeaveWindow >= timeout-stepsReserve(timeout):
		return bad("DRAIN_DELAY=%s plus LEAVE_WINDOW=%s must be below SHUTDOWN_TIMEOUT=%s less %s, or the last long-lived requests are cut",
			max(delay, 0), s.LeaveWindow, timeout, stepsReserve(timeout))
	}
	return nil
}

// stepsReserve is the time before SHUTDOWN_TIMEOUT that the drain keeps
// for its hooks: a tenth, at most a second (as health.Config.Validate
// counts it).
func stepsReserve(timeout time.Duration) time.Duration { return min(timeout/10, time.Second) }

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
