package health

import "time"

// clock is the time source of a Server's drain: the real clock, or the
// drain tests' manual one. (testing/synctest could drive the timers, but
// not these tests' real loopback connections: a goroutine blocked on the
// network is not durably blocked, so a bubble's time would not move.)
type clock interface {
	Now() time.Time
	After(d time.Duration) <-chan time.Time
}

type realClock struct{}

func (realClock) Now() time.Time                         { return time.Now() }
func (realClock) After(d time.Duration) <-chan time.Time { return time.After(d) }
