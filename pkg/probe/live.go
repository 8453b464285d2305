package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/kelseyhightower/envconfig"
	"github.com/spf13/cobra"

	"github.com/drainwell/drainwell/internal/marker"
)

// LiveConfig is what the live check reads: LIVE_FILE and LIVE_MAX_AGE.
type LiveConfig struct {
	File   string        `envconfig:"LIVE_FILE" default:"/run/live/live"`
	MaxAge time.Duration `envconfig:"LIVE_MAX_AGE" default:"30s"`
}

// LoadLiveConfig reads LiveConfig from the environment. A bad value yields
// an error that names the variable and matches ErrUsage.
func LoadLiveConfig() (LiveConfig, error) {
	c, err := liveEnv()
	if err != nil {
		return c, err
	}
	return c, c.Validate()
}

func liveEnv() (LiveConfig, error) {
	var c LiveConfig
	if err := envconfig.Process("", &c); err != nil {
		return c, envError(err)
	}
	return c, nil
}

// Validate reports a configuration that cannot work, naming the variable.
func (c LiveConfig) Validate() error { return marker.Validate(c.File, c.MaxAge) }

// envError turns an envconfig error into a one-line error that names the
// variable and its value and matches ErrUsage.
func envError(err error) error {
	var pe *envconfig.ParseError
	if errors.As(err, &pe) {
		return fmt.Errorf("%w: %s=%q: %v", ErrUsage, pe.KeyName, pe.Value, pe.Err)
	}
	return fmt.Errorf("%w: %v", ErrUsage, err)
}

// Live checks the marker described by c now, giving up with ErrTimeout
// after timeout: kubelet does not kill an exec probe that times out, so a
// probe stuck on a hung file system would pile up processes.
func Live(ctx context.Context, c LiveConfig, timeout time.Duration) error {
	return marker.Live(ctx, c.File, c.MaxAge, timeout)
}

// Command returns the `live` subcommand. Add it to a service's root command
// in one line:
//
//	root.AddCommand(probe.Command())
//
// and point the liveness probe at it: exec ["/app", "live"]. It reads
// LIVE_FILE (default /run/live/live) and LIVE_MAX_AGE (default 30s; 0 checks
// existence only), overridden by --file and --max-age, and returns nil when
// the marker is live. On failure it returns an error whose text says why
// (missing, stale for 47s, ...); health.ExitCode maps it to the exit status.
func Command() *cobra.Command {
	var (
		file    string
		maxAge  time.Duration
		timeout time.Duration
	)
	cmd := &cobra.Command{
		Use:           "live",
		Short:         "Exit 0 if the liveness marker is fresh, 1 otherwise",
		Args:          noArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// LIVE_MAX_AGE is the only variable that can fail to
			// parse; --max-age replaces it, bad or not.
			c, err := liveEnv()
			if err != nil && !cmd.Flags().Changed("max-age") {
				return err
			}
			if cmd.Flags().Changed("file") {
				c.File = file
			}
			if cmd.Flags().Changed("max-age") {
				c.MaxAge = maxAge
			}
			if err := c.Validate(); err != nil {
				return err
			}
			if timeout <= 0 {
				return fmt.Errorf("%w: --timeout=%s must be positive", ErrUsage, timeout)
			}
			return Live(cmd.Context(), c, timeout)
		},
	}
	cmd.SetFlagErrorFunc(func(_ *cobra.Command, err error) error {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	})
	cmd.Flags().StringVar(&file, "file", DefaultFile, "marker file (env LIVE_FILE)")
	cmd.Flags().DurationVar(&maxAge, "max-age", DefaultMaxAge, "age beyond which the marker is stale; 0 checks existence only (env LIVE_MAX_AGE)")
	cmd.Flags().DurationVar(&timeout, "timeout", DefaultTimeout, "give up after this long")
	return cmd
}

// noArgs is cobra.NoArgs with an error that matches ErrUsage.
func noArgs(cmd *cobra.Command, args []string) error {
	if err := cobra.NoArgs(cmd, args); err != nil {
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	return nil
}
