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

func (m *Memory) Incr(context.Context) error         { m.n.Add(1); return nil }
func (m *Memory) Get(context.Context) (int64, error) { return m.n.Load(), nil }
func (m *Memory) Ping(context.Context) error         { return nil }
func (m *Memory) Close() error                       { return nil }

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

func (r *Redis) Incr(ctx context.Context) error { return r.c.Incr(ctx, Key).Err() }

func (r *Redis) Get(ctx context.Context) (int64, error) {
	n, err := r.c.Get(ctx, Key).Int64()
	if err == redis.Nil {
		return 0, nil
	}
	return n, err
}

func (r *Redis) Ping(ctx context.Context) error { return r.c.Ping(ctx).Err() }
func (r *Redis) Close() error                   { return r.c.Close() }
