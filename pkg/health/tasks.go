package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// ErrTooLate is returned by Server.TryGo once the drain has finished waiting
// for background work (the work would not be waited for, so it is
// refused), and by Server.OnStop once the hooks have started.
var ErrTooLate = errors.New("server stopped: too late to add work or a hook")

// tasks is the tracked background work: a counter that the drain can wait
// on with a deadline, and the context the work runs under, cancelled only at
// the shutdown deadline.
type tasks struct {
	log    *slog.Logger
	ctx    context.Context
	cancel context.CancelFunc

	abandoned atomic.Int64 // at the deadline

	mu      sync.Mutex
	running int
	started int
	closed  bool
	done    chan struct{} // a task ended
}

func newTasks(log *slog.Logger) *tasks {
	ctx, cancel := context.WithCancel(context.Background())
	return &tasks{log: log, ctx: ctx, cancel: cancel, done: make(chan struct{}, 1)}
}

func (t *tasks) goTask(f func(context.Context)) error {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return ErrTooLate
	}
	t.running++
	t.started++
	t.mu.Unlock()
	go func() {
		defer t.end()
		defer func() {
			// A panic in background work must not take the process,
			// and every other task's work, down with it.
			if r := recover(); r != nil {
				t.log.Error("background task panicked", "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			}
		}()
		f(t.ctx)
	}()
	return nil
}

func (t *tasks) end() {
	t.mu.Lock()
	t.running--
	t.mu.Unlock()
	select {
	case t.done <- struct{}{}:
	default:
	}
}

// closeIfIdle refuses new tasks and returns true when none is running.
func (t *tasks) closeIfIdle() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.running == 0 {
		t.closed = true
	}
	return t.closed
}

// abandon refuses new tasks, cancels the running ones and returns how many
// were still running.
func (t *tasks) abandon() int {
	t.mu.Lock()
	t.closed = true
	n := t.running
	t.mu.Unlock()
	t.cancel()
	t.abandoned.Add(int64(n))
	return n
}

func (t *tasks) counts() (running, started int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.running, t.started
}
