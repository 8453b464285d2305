// Package counter holds the example service's counter: in memory, or in
// Redis as the articles' "guinea pig" keeps it.
//
// Each increment carries the ID of the request that asked for it, and is
// applied at most once per ID, so a caller may retry an increment whose
// reply was lost (the write happened, the caller never heard) without
// counting it twice.
//
// Each applied increment is also an event, whose ID is the count it
// produced: 1, 2, 3, ... Both counters implement Events, which reads them
// after a given ID, so that a watcher that reconnects to another process
// resumes where it was: nothing missed, nothing twice.
package counter

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
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

// Events is the log of a Counter's applied increments. An increment's
// event is the count it produced, so its ID is also its value, and the
// IDs are 1, 2, 3, ... in the order the increments were applied.
type Events interface {
	// After returns the events after the event after (0: from the
	// first), oldest first: at least one, at most MaxBatch, with no gap
	// between them. It waits for one until ctx ends, then returns ctx's
	// error. Events the log no longer keeps are never skipped silently:
	// when the next one it has is not after+1, it returns a
	// *MissedError that names those gone, and no events; the caller
	// tells its client, and goes on after MissedError.To.
	After(ctx context.Context, after int64) ([]int64, error)
}

// MaxBatch bounds the events one Events.After call returns.
const MaxBatch = 1000

// MissedError is Events.After's error for the events From to To
// (inclusive) that the log no longer keeps: trimmed (StreamMaxLen), or
// never recorded.
type MissedError struct{ From, To int64 }

func (e *MissedError) Error() string {
	return fmt.Sprintf("events %d to %d are no longer kept", e.From, e.To)
}

// errNegative is After's error for a negative ID.
var errNegative = errors.New("event IDs are not negative")

// contiguous returns the events of ids (ascending, all after after) that
// follow after with no gap, copied; or, when the first does not follow it,
// the *MissedError for those in between.
func contiguous(after int64, ids []int64) ([]int64, error) {
	if ids[0] != after+1 {
		return nil, &MissedError{From: after + 1, To: ids[0] - 1}
	}
	n := 1
	for n < len(ids) && ids[n] == after+int64(n)+1 {
		n++
	}
	return append([]int64(nil), ids[:n]...), nil
}

// Memory is an in-process Counter, for running the service with nothing
// else. Its events are its counts, so it keeps them all without storing
// any: nothing is ever missed.
type Memory struct {
	n       atomic.Int64
	mu      sync.Mutex
	changed chan struct{} // closed at the next increment; nil until a watcher waits
}

// Incr adds one. It cannot fail, so it is never retried: each call is a
// new request's.
func (m *Memory) Incr(context.Context, string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.n.Add(1)
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
	return nil
}

// After returns the events after after, waiting for one until ctx ends.
func (m *Memory) After(ctx context.Context, after int64) ([]int64, error) {
	if after < 0 {
		return nil, errNegative
	}
	for {
		m.mu.Lock()
		if n := m.n.Load(); n > after {
			m.mu.Unlock()
			ids := make([]int64, min(n-after, MaxBatch))
			for i := range ids {
				ids[i] = after + int64(i) + 1
			}
			return ids, nil
		}
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		ch := m.changed
		m.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

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

// StreamKey is the Redis stream of the events: one entry per applied
// increment, its ID "0-<n>" for the count n it produced.
const StreamKey = "counter:events"

// StreamMaxLen bounds the stream: each XADD trims it to about this many
// entries (MAXLEN ~: Redis drops whole nodes of 100 entries, so it keeps
// at least this many and at most about 100 more): 1.9 MB in Redis 7.0
// (MEMORY USAGE after 150,000 increments). At 2000 increments a
// second that is 50 s of history: a watcher that resumes further behind
// is told which events it missed (MissedError), never served a gap
// silently.
const StreamMaxLen = 100000

// incrOnce increments the count, records the request ID and adds the
// increment's event in one atomic step: a retried script finds its ID and
// leaves the count alone. The ID is recorded only once the increment has
// succeeded: a script's writes are not rolled back, so an INCR that fails
// (the key holds a non-integer, or would overflow) must not leave an ID
// that makes the retry a no-op. For the same reason the event comes last
// and its failure (the stream key holds another type, or an entry at or
// beyond this count: the count was set back by hand) does not fail the
// script, whose increment stands: the event is missing from the stream,
// and watchers are told they missed it. The event's ID is the count, so
// the stream's IDs rise as the count does (the script is atomic). It
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
redis.pcall("XADD", KEYS[3], "MAXLEN", "~", ARGV[2], string.format("0-%d", n), "n", string.format("%d", n))
return 1
`)

// Redis is a Counter kept in Redis under Key, its events in StreamKey.
type Redis struct {
	c    *redis.Client
	tail *tail
}

// NewRedis returns a Counter at the Redis server addr. go-redis's own
// retries are off: the caller retries, and logs each failure.
func NewRedis(addr, password string) *Redis {
	return &Redis{
		c:    redis.NewClient(options(addr, password)),
		tail: &tail{addr: addr, password: password, keep: tailKeep},
	}
}

func options(addr, password string) *redis.Options {
	return &redis.Options{
		Addr:         addr,
		Password:     password,
		MaxRetries:   -1,
		DialTimeout:  time.Second,
		ReadTimeout:  time.Second,
		WriteTimeout: time.Second,
	}
}

// Incr increments Key for request id, once: the ID's record (kept for
// IDTTL), the increment and its event happen in one Lua script,
// atomically.
func (r *Redis) Incr(ctx context.Context, id string) error {
	if id == "" {
		return errors.New("increment without a request ID")
	}
	return incrOnce.Run(ctx, r.c, []string{Key, IDPrefix + id, StreamKey}, IDTTL.Milliseconds(), StreamMaxLen).Err()
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

// Close stops the events' reader, if it started, and closes the client.
func (r *Redis) Close() error {
	r.tail.close()
	return r.c.Close()
}

// After returns the events after after, waiting for one until ctx ends.
//
// Watchers do not each hold a connection: go-redis's pool (10 per CPU) is
// the increments', and hundreds of XREAD BLOCKs would empty it. One reader
// goroutine per process, on a connection of its own, follows the stream
// with XREAD BLOCK and keeps its newest events (tailKeep) in memory, which
// serves every watcher that is caught up or a little behind (a client
// back from another pod). Only one further behind reads the older events
// with XRANGE, a short command on the pool, up to MaxBatch at a time.
func (r *Redis) After(ctx context.Context, after int64) ([]int64, error) {
	if after < 0 {
		return nil, errNegative
	}
	t := r.tail
	t.start()
	for {
		t.mu.Lock()
		if t.closed {
			t.mu.Unlock()
			return nil, errClosed
		}
		seeded, floor, ch := t.seeded, t.floor, t.changed
		if seeded && after >= floor {
			if i := sort.Search(len(t.ids), func(i int) bool { return t.ids[i] > after }); i < len(t.ids) {
				ids, err := contiguous(after, t.ids[i:min(len(t.ids), i+MaxBatch)])
				t.mu.Unlock()
				return ids, err
			}
		}
		t.mu.Unlock()
		if seeded && after < floor {
			return r.older(ctx, after, floor)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// older reads the events after after, up to floor, from the stream itself.
func (r *Redis) older(ctx context.Context, after, floor int64) ([]int64, error) {
	msgs, err := r.c.XRangeN(ctx, StreamKey, "0-"+strconv.FormatInt(after+1, 10), "0-"+strconv.FormatInt(floor, 10), MaxBatch).Result()
	if err != nil {
		return nil, err
	}
	ids := eventIDs(msgs)
	if len(ids) == 0 {
		// Gone since the reader saw them: trimmed.
		return nil, &MissedError{From: after + 1, To: floor}
	}
	return contiguous(after, ids)
}

var errClosed = errors.New("counter closed")

// tailKeep is how many of the newest events the reader keeps in memory (8
// bytes each).
const tailKeep = 10000

// tailBlock is how long one XREAD waits for new events; go-redis allows it
// 10 s more to answer.
const tailBlock = 5 * time.Second

// tail is the end of the event stream, followed by one goroutine on a
// connection of its own and shared by every watcher in the process.
type tail struct {
	addr, password string
	keep           int

	mu      sync.Mutex
	started bool
	closed  bool
	rc      *redis.Client
	stop    context.CancelFunc
	done    chan struct{} // closed when the reader has returned
	// Once seeded, ids holds every event of the stream in (floor, last],
	// ascending, last its end.
	seeded  bool
	floor   int64
	ids     []int64
	changed chan struct{} // closed and replaced when the above change
}

// start starts the reader, once.
func (t *tail) start() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.started || t.closed {
		return
	}
	t.started = true
	o := options(t.addr, t.password)
	o.PoolSize = 1
	t.rc = redis.NewClient(o)
	t.changed = make(chan struct{})
	ctx, stop := context.WithCancel(context.Background())
	t.stop, t.done = stop, make(chan struct{})
	go t.run(ctx)
}

// close stops the reader and wakes its watchers.
func (t *tail) close() {
	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return
	}
	t.closed = true
	started := t.started
	if started {
		close(t.changed)
	}
	t.mu.Unlock()
	if started {
		t.stop()
		_ = t.rc.Close() // ends an XREAD that blocks
		<-t.done
	}
}

// run follows the stream until close. After an error it reads the
// stream's end anew (seed) once Redis answers: Redis may have restarted
// empty, and an XREAD after the old end would wait for IDs that are not
// coming.
func (t *tail) run(ctx context.Context) {
	defer close(t.done)
	cursor := "" // the last entry read; "": seed first
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		var err error
		if cursor == "" {
			cursor, err = t.seed(ctx)
		} else {
			var streams []redis.XStream
			streams, err = t.rc.XRead(ctx, &redis.XReadArgs{Streams: []string{StreamKey, cursor}, Count: MaxBatch, Block: tailBlock}).Result()
			switch {
			case errors.Is(err, redis.Nil): // nothing new within tailBlock
				err = nil
			case err == nil && len(streams) == 1 && len(streams[0].Messages) > 0:
				msgs := streams[0].Messages
				cursor = msgs[len(msgs)-1].ID
				t.add(eventIDs(msgs))
			}
		}
		if err != nil {
			cursor = ""
			timer := time.NewTimer(backoff)
			select {
			case <-timer.C:
			case <-ctx.Done():
				timer.Stop()
				return
			}
			backoff = min(backoff*2, 2*time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
	}
}

// seed reads the newest events, and returns the cursor to follow from.
func (t *tail) seed(ctx context.Context) (string, error) {
	msgs, err := t.rc.XRevRangeN(ctx, StreamKey, "+", "-", int64(t.keep)).Result()
	if err != nil {
		return "", err
	}
	cursor := "0-0"
	if len(msgs) > 0 {
		cursor = msgs[0].ID
	}
	ids := eventIDs(msgs)
	for i, j := 0, len(ids)-1; i < j; i, j = i+1, j-1 {
		ids[i], ids[j] = ids[j], ids[i]
	}
	var floor int64
	if len(msgs) == t.keep && len(ids) > 0 {
		floor = ids[0] - 1 // the stream may hold older ones
	}
	t.mu.Lock()
	t.seeded, t.floor, t.ids = true, floor, ids
	t.wake()
	t.mu.Unlock()
	return cursor, nil
}

// add appends the events the reader read, and drops the oldest beyond
// twice keep (the copy happens once per keep events).
func (t *tail) add(ids []int64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if n := len(t.ids); n > 0 {
		for len(ids) > 0 && ids[0] <= t.ids[n-1] {
			ids = ids[1:] // not after the end: never, unless set back by hand
		}
	}
	if len(ids) == 0 {
		return
	}
	t.ids = append(t.ids, ids...)
	if n := len(t.ids); n > 2*t.keep {
		t.ids = t.ids[:copy(t.ids, t.ids[n-t.keep:])]
		t.floor = t.ids[0] - 1
	}
	t.wake()
}

// wake wakes the watchers that wait; t.mu is held.
func (t *tail) wake() {
	if !t.closed {
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

// eventIDs returns the counts of the stream entries msgs, in their order.
// An entry whose ID is not "0-<n>" is not an event (added by hand) and is
// left out.
func eventIDs(msgs []redis.XMessage) []int64 {
	ids := make([]int64, 0, len(msgs))
	for _, m := range msgs {
		s, ok := strings.CutPrefix(m.ID, "0-")
		if !ok {
			continue
		}
		if n, err := strconv.ParseInt(s, 10, 64); err == nil && n > 0 {
			ids = append(ids, n)
		}
	}
	return ids
}
