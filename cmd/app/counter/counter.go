// Package counter holds the example service's counter: in memory, or in
// Redis as the articles' "guinea pig" keeps it.
//
// Each increment carries the ID of the request that asked for it, and is
// applied at most once per ID, so a caller may retry an increment whose
// reply was lost (the write happened, the caller never heard) without
// counting it twice.
package counter

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Counter is a shared count.
type Counter interface {
	// Incr adds one for the request id, unless an increment for id was
	// applied already: then it does nothing and returns nil. A caller
	// retries it until it returns nil.
	Incr(ctx context.Context, id string) error
	Get(ctx context.Context) (int64, error)
	Ping(ctx context.Context) error
	Close() error
}

// Memory is an in-process Counter, for running the service with nothing
// else.
type Memory struct{ n atomic.Int64 }

// Incr adds one. It cannot fail, so it is never retried: each call is a
// new request's.
func (m *Memory) Incr(context.Context, string) error { m.n.Add(1); return nil }

// Get returns the count.
func (m *Memory) Get(context.Context) (int64, error) { return m.n.Load(), nil }

// Ping always succeeds: there is nothing to reach.
func (m *Memory) Ping(context.Context) error { return nil }

// Close does nothing.
func (m *Memory) Close() error { return nil }

// Key is the Redis key of the count.
const Key = "counter"

// IDPrefix prefixes the Redis key that records an applied request ID.
const IDPrefix = "counter:applied:"

// IDTTL is how long Redis remembers an applied request ID. A retry after
// that could count twice, so a caller stops retrying an increment before
// (RetryLimit). At 2000 increments a second it keeps 600,000 keys of about
// 100 bytes each.
const IDTTL = 5 * time.Minute

// RetryLimit is how long after its request an increment may still be
// retried: IDTTL less a margin for an attempt in flight.
const RetryLimit = IDTTL - 30*time.Second

// incrOnce increments the count and records the request ID in one atomic
// step: a retried script finds its ID and leaves the count alone. The ID
// is recorded only once the increment has succeeded: a script's writes are
// not rolled back, so an INCR that fails (the key holds a non-integer, or
// would overflow) must not leave an ID that makes the retry a no-op. It
// returns 1 when it incremented, 0 for a repeat, and INCR's error.
var incrOnce = redis.NewScript(`
if redis.call("EXISTS", KEYS[2]) == 1 then
	return 0
end
local n = redis.pcall("INCR", KEYS[1])
if type(n) == "table" and n.err then
	return n
end
redis.call("SET", KEYS[2], "1", "PX", ARGV[1])
return 1
`)

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

// Incr increments Key for request id, once: the ID's record (kept for
// IDTTL) and the increment happen in one Lua script, atomically.
func (r *Redis) Incr(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("increment without a request ID")
	}
	return incrOnce.Run(ctx, r.c, []string{Key, IDPrefix + id}, IDTTL.Milliseconds()).Err()
}

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
