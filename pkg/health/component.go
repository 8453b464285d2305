package health

import (
	"context"
	"fmt"
	"runtime/debug"
	"sync/atomic"
)

// A Component is a long-running part of a service that drains with the
// Server: a gRPC server, a queue consumer, a second kind of listener. It is
// oklog/run's actor with this drain's order.
//
// Run is called when the Server starts serving and runs until the
// component is done. Its context is cancelled at the shutdown deadline
// (give up: abandon what is left) or when the Server stops. A Run that
// returns before the drain begins, with or without an error, starts the
// drain, and its error is returned by Server.Run with ErrServerStopped
// (exit 3). That drain still serves the delay on the other listeners: the
// endpoint lag still routes requests to them.
//
// Shutdown is called once, after the drain delay, beside the Server's own
// listeners and every other component's Shutdown: stop taking new work,
// finish what is held, make Run return, and return. Its context ends at the
// shutdown deadline; after that Shutdown must cut what is left and return
// promptly, its error saying what was cut. A component that must stop
// taking work at the signal itself, before the delay, watches
// Server.Draining.
//
// The drain waits for both Shutdown and Run to return before it waits for
// the background work started with TryGo.
type Component interface {
	Run(ctx context.Context) error
	Shutdown(ctx context.Context) error
}

// component is an added Component with its name and outcome.
type component struct {
	name   string
	c      Component
	done   chan struct{} // closed when Run has returned
	runErr error         // Run's error, once done is closed
	// reported: Run returned before the drain and Server.Run reports
	// its error as the drain's cause (set before the drain starts)
	reported bool
	step     atomic.Pointer[string] // the drain step it is in, "" when stopped
}

func (c *component) setStep(step string) { c.step.Store(&step) }

// run calls Run, recovering a panic as an error.
func (c *component) run(ctx context.Context) {
	defer close(c.done)
	defer func() {
		if r := recover(); r != nil {
			c.runErr = fmt.Errorf("%s: panic: %v\n%s", c.name, r, debug.Stack())
		}
	}()
	if err := c.c.Run(ctx); err != nil {
		c.runErr = fmt.Errorf("%s: %w", c.name, err)
	}
}

// shutdown calls Shutdown, then waits for Run to return or ctx to end, and
// returns their errors.
func (c *component) shutdown(ctx context.Context) (err error) {
	c.setStep("shutdown") // kept when the deadline cuts it
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%s: shutdown panic: %v", c.name, r)
		}
	}()
	if err := c.c.Shutdown(ctx); err != nil {
		return fmt.Errorf("%s: %w", c.name, err)
	}
	c.setStep("run")
	select {
	case <-c.done:
		c.setStep("")
		if c.reported {
			return nil
		}
		return c.runErr // written before done was closed
	case <-ctx.Done():
		return fmt.Errorf("%s: Run still running at the deadline: %w", c.name, ctx.Err())
	}
}
