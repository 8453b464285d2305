// Package counter holds the example service's counter: in memory, or in
// Redis as the articles' "guinea pig" keeps it.
package counter

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Counter is a shared count.
type Counter interface {
	Incr(ctx context.Context) error
	Get(ctx context.Context) (int64, error)
	Ping(ctx context.Context) error
	Close() error
}

// Memory is an in-process Counter, for running the service with nothing
// else.
type Memory struct{ n atomic.Int64 }

// Incr adds one.
func (m *Memory) Incr(context.Context) error { m.n.Add(1); return nil }

// Get returns the count.
func (m *Memory) Get(context.Context) (int64, error) { return m.n.Load(), nil }

// Ping always succeeds: there is nothing to reach.
func (m *Memory) Ping(context.Context) error { return nil }

// Close does nothing.
func (m *Memory) Close() error { return nil }

// Key is the Redis key of the count.
const Key = "counter"

// Redis is a Counter kept in Redis under Key.
type Redis struct{ c *redis.Client }

// NewRedis returns a Counter at the Redis server addr. go-redis's own
// retries are off: the caller retries, and logs each failure.
func NewRedis(addr, password string) *Redis {
	return &Redis{c: redis.NewClient(&redis.Options{
		Addr:         addr,
		Password:     password,
		MaxRetries:   -1,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	})}
}

// Incr runs INCR on Key, once.
func (r *Redis) Incr(ctx context.Context) error { return r.c.Incr(ctx, Key).Err() }

// Get reads Key; a missing key counts 0.
func (r *Redis) Get(ctx context.Context) (int64, error) {
	n, err := r.c.Get(ctx, Key).Int64()
	if err == redis.Nil {
		return 0, nil
	}
	return n, err
}

// Ping checks the server answers (the readiness check).
func (r *Redis) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }

// Close closes the client.
func (r *Redis) Close() error { return r.c.Close() }
