package counter

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/drainwell/drainwell/cmd/app/internal/redistest"
	"github.com/drainwell/drainwell/internal/testutil"
)

// counters returns the counters to test: in memory, and in a real Redis
// (skipped where redis-server is not installed, outside CI).
func counters(t *testing.T) map[string]func(t *testing.T) Counter {
	return map[string]func(t *testing.T) Counter{
		"memory": func(*testing.T) Counter { return &Memory{} },
		"redis": func(t *testing.T) Counter {
			addr, _ := redistest.Start(t)
			r := NewRedis(addr, "")
			t.Cleanup(func() { r.Close() })
			return r
		},
	}
}

func incr(t *testing.T, c Counter, ids ...string) {
	t.Helper()
	for _, id := range ids {
		if err := c.Incr(context.Background(), id); err != nil {
			t.Fatalf("Incr(%s): %v", id, err)
		}
	}
}

func ids(from, to int64) []int64 {
	var out []int64
	for n := from; n <= to; n++ {
		out = append(out, n)
	}
	return out
}

// after calls After with a bound: a call that should find events must not
// wait.
func after(t *testing.T, c Counter, n int64) ([]int64, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testutil.Patience)
	defer cancel()
	return c.(Events).After(ctx, n)
}

// collect calls After from n until it has returned the event to, and
// returns the events and the size of the largest batch. (Redis's After
// returns what its reader has read so far: the rest comes next call.)
func collect(t *testing.T, c Counter, n, to int64) (got []int64, largest int) {
	t.Helper()
	for n < to {
		batch, err := after(t, c, n)
		if err != nil {
			t.Fatalf("After(%d) after %v: %v", n, got, err)
		}
		got = append(got, batch...)
		largest = max(largest, len(batch))
		n = batch[len(batch)-1]
	}
	return got, largest
}

// Each applied increment is one event, its ID the count it produced; After
// returns those after the ID asked, in order, and waits for the next one.
// A repeated request ID (a retry) is no event.
func TestEventsAfter(t *testing.T) {
	for name, newCounter := range counters(t) {
		t.Run(name, func(t *testing.T) {
			c := newCounter(t)
			ev := c.(Events)
			short, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			if got, err := ev.After(short, 0); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("After(0) with no increments = %v, %v; want it to wait until its context ends", got, err)
			}
			incr(t, c, "a", "b", "c", "d", "e")
			for _, tt := range []struct {
				after int64
				want  []int64
			}{{0, ids(1, 5)}, {3, ids(4, 5)}, {4, ids(5, 5)}} {
				if got, _ := collect(t, c, tt.after, 5); !slices.Equal(got, tt.want) {
					t.Errorf("After from %d: %v, want %v", tt.after, got, tt.want)
				}
			}
			if _, err := after(t, c, -1); err == nil {
				t.Error("After(-1) did not fail")
			}
			// A watcher caught up waits for the next increment.
			got := make(chan []int64, 1)
			go func() {
				ids, err := after(t, c, 5)
				if err != nil {
					t.Error(err)
				}
				got <- ids
			}()
			time.Sleep(20 * time.Millisecond) // let it wait: the order does not matter to the result
			incr(t, c, "f")
			if ids := testutil.Receive(t, "the waiting After", got); !slices.Equal(ids, []int64{6}) {
				t.Errorf("the waiting After(5) got %v, want [6]", ids)
			}
			if _, isRedis := c.(*Redis); isRedis {
				incr(t, c, "f") // a retry of an applied request: no count, no event
				short, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
				defer cancel()
				if got, err := ev.After(short, 6); !errors.Is(err, context.DeadlineExceeded) {
					t.Errorf("After(6) after a repeated request ID = %v, %v; want no event", got, err)
				}
			}
			// More than MaxBatch at once: at most MaxBatch a call, all of
			// them in order.
			for i := range MaxBatch + 10 {
				incr(t, c, "bulk"+strconv.Itoa(i))
			}
			all, largest := collect(t, c, 6, 16+MaxBatch)
			if !slices.Equal(all, ids(7, 16+MaxBatch)) || largest > MaxBatch {
				t.Fatalf("after 6: %d events, at most %d a call; want 7..%d, at most %d a call", len(all), largest, 16+MaxBatch, MaxBatch)
			}
		})
	}
}

// The stream's entries are the counts, as "0-<n>", written by the
// increment's own script.
func TestRedisStreamEntries(t *testing.T) {
	addr, rc := redistest.Start(t)
	r := NewRedis(addr, "")
	defer r.Close()
	incr(t, r, "a", "b", "c")
	msgs, err := rc.XRange(context.Background(), StreamKey, "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, m := range msgs {
		got = append(got, m.ID+"="+m.Values["n"].(string))
	}
	if want := []string{"0-1=1", "0-2=2", "0-3=3"}; !slices.Equal(got, want) {
		t.Fatalf("stream %v, want %v", got, want)
	}
}

// Events the stream no longer holds (trimmed, or never written) are
// reported as missed, from the reader's memory and from the stream alike,
// and the events on either side are served whole.
func TestRedisEventsMissed(t *testing.T) {
	addr, rc := redistest.Start(t)
	r := NewRedis(addr, "")
	defer r.Close()
	r.tail.keep = 4 // the reader keeps 17..20: older ones come from the stream
	ctx := context.Background()
	for i := range 20 {
		incr(t, r, "id"+strconv.Itoa(i))
	}
	if err := rc.XTrimMaxLen(ctx, StreamKey, 10).Err(); err != nil { // as MAXLEN ~ would, sooner
		t.Fatal(err)
	}
	tests := []struct {
		after int64
		want  []int64
		miss  *MissedError
	}{
		{after: 0, miss: &MissedError{From: 1, To: 10}},
		{after: 9, miss: &MissedError{From: 10, To: 10}},
		{after: 10, want: ids(11, 16)}, // from the stream, up to what the reader keeps
		{after: 13, want: ids(14, 16)},
		{after: 16, want: ids(17, 20)}, // from the reader's memory
	}
	for _, tt := range tests {
		got, err := after(t, r, tt.after)
		var miss *MissedError
		switch {
		case tt.miss != nil && (!errors.As(err, &miss) || *miss != *tt.miss):
			t.Errorf("After(%d) = %v, %v; want %v", tt.after, got, err, tt.miss)
		case tt.miss == nil && (err != nil || !slices.Equal(got, tt.want)):
			t.Errorf("After(%d) = %v, %v; want %v", tt.after, got, err, tt.want)
		}
	}
	// A count made without its event (a plain INCR, by hand or by an older
	// version): a gap in the stream, reported, then the events after it.
	if err := rc.Incr(ctx, Key).Err(); err != nil {
		t.Fatal(err)
	}
	incr(t, r, "after the gap")
	var miss *MissedError
	if _, err := after(t, r, 20); !errors.As(err, &miss) || *miss != (MissedError{From: 21, To: 21}) {
		t.Errorf("After(20) across a gap = %v, want events 21 to 21 missed", err)
	}
	if got, err := after(t, r, 21); err != nil || !slices.Equal(got, []int64{22}) {
		t.Errorf("After(21) = %v, %v; want [22]", got, err)
	}
	// A batch ends at a gap: the next call reports it.
	if got, err := after(t, r, 16); err != nil || !slices.Equal(got, ids(17, 20)) {
		t.Errorf("After(16) with 21 missing = %v, %v; want 17..20", got, err)
	}
	// The reader's memory keeps its bound (2×keep, then keep), and what
	// it dropped comes from the stream.
	for i := range 10 {
		incr(t, r, "more"+strconv.Itoa(i))
	}
	var got []int64
	for last := int64(22); last < 32; {
		batch, err := after(t, r, last)
		if err != nil {
			t.Fatalf("After(%d): %v", last, err)
		}
		got = append(got, batch...)
		last = batch[len(batch)-1]
	}
	if !slices.Equal(got, ids(23, 32)) {
		t.Errorf("after 22: %v, want 23..32", got)
	}
	r.tail.mu.Lock()
	kept := len(r.tail.ids)
	r.tail.mu.Unlock()
	if kept > 2*r.tail.keep {
		t.Errorf("the reader keeps %d events, more than twice its bound %d", kept, r.tail.keep)
	}
}

// Watchers share one reader on a connection of its own: hundreds waiting
// take no connection from the pool the increments use.
func TestRedisWatchersHoldNoPoolConnection(t *testing.T) {
	addr, _ := redistest.Start(t)
	r := NewRedis(addr, "")
	defer r.Close()
	incr(t, r, "first")
	const watchers = 300 // beyond the pool's 10 per CPU
	var wg sync.WaitGroup
	errs := make(chan error, watchers)
	for range watchers {
		wg.Go(func() {
			got, err := after(t, r, 1)
			if err == nil && !slices.Equal(got, []int64{2}) {
				err = errors.New("got " + strconv.Itoa(len(got)) + " events, want [2]")
			}
			if err != nil {
				errs <- err
			}
		})
	}
	time.Sleep(50 * time.Millisecond) // most are waiting by now; the bound below holds either way
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := r.Incr(ctx, "second"); err != nil {
		t.Fatalf("Incr with %d watchers waiting: %v", watchers, err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if st := r.c.PoolStats(); st.TotalConns > 2 {
		t.Errorf("the increments' pool opened %d connections for %d watchers, want at most 2", st.TotalConns, watchers)
	}
}

// Close ends the reader, and the watchers that wait.
func TestRedisCloseEndsWatchers(t *testing.T) {
	addr, _ := redistest.Start(t)
	r := NewRedis(addr, "")
	done := make(chan error, 1)
	go func() {
		_, err := r.After(context.Background(), 0)
		done <- err
	}()
	time.Sleep(20 * time.Millisecond) // let it wait
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := testutil.Receive(t, "the waiting After to return", done); !errors.Is(err, errClosed) {
		t.Fatalf("After during Close = %v, want %v", err, errClosed)
	}
	if _, err := r.After(context.Background(), 0); !errors.Is(err, errClosed) {
		t.Fatalf("After after Close = %v, want %v", err, errClosed)
	}
}
