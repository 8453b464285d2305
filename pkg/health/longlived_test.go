package health

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/drainwell/drainwell/internal/testutil"
)

// Long-lived requests leave one at a time, spread over LeaveWindow once
// the drain delay is over; a request that ignores its turn is cut at the
// deadline. NoLeaveWindow is the control: every client leaves at the same
// instant and reconnects to the survivors together.
func TestLongLivedLeaveInTurn(t *testing.T) {
	tests := []struct {
		name     string
		window   time.Duration
		streams  int
		ignore   bool            // the handler ignores its turn
		turns    []time.Duration // when each stream was asked, from the signal
		end      End
		asked    int64
		left     int64
		cut      int64
		drainEnd time.Duration // when Serve returned, from the signal
	}{
		{name: "spread over the window", window: 4 * time.Second, streams: 4,
			turns: []time.Duration{5 * time.Second, 6 * time.Second, 7 * time.Second, 8 * time.Second},
			end:   EndClean, asked: 4, left: 4, drainEnd: 8 * time.Second},
		// The default: half the time left at the end of the delay. The
		// phases end a second before the 25 s deadline, so 19 s are left
		// at 5 s, and the window is 9.5 s.
		{name: "default window", streams: 2,
			turns: []time.Duration{5 * time.Second, 5*time.Second + 4750*time.Millisecond},
			end:   EndClean, asked: 2, left: 2, drainEnd: 5*time.Second + 4750*time.Millisecond},
		{name: "control: no window, all at once", window: NoLeaveWindow, streams: 4,
			turns: []time.Duration{5 * time.Second, 5 * time.Second, 5 * time.Second, 5 * time.Second},
			end:   EndClean, asked: 4, left: 4, drainEnd: 5 * time.Second},
		{name: "a handler that ignores its turn is cut", window: time.Second, streams: 1, ignore: true,
			turns: []time.Duration{5 * time.Second}, end: EndDeadline, asked: 1, cut: 1, drainEnd: testExpire},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inBubble(t, func(t *testing.T) {
				var srv *Server
				var mu sync.Mutex
				var turns []time.Duration
				var signalled time.Time
				stream := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					turn, left := srv.LongLived(r.Context())
					defer left()
					w.Header().Set("Content-Type", "text/event-stream")
					io.WriteString(w, "data: hello\n\n")
					http.NewResponseController(w).Flush()
					<-turn.Done()
					if context.Cause(turn) != ErrTurnToLeave {
						return
					}
					mu.Lock()
					turns = append(turns, time.Since(signalled))
					mu.Unlock()
					if tt.ignore {
						<-r.Context().Done() // until the connection is cut
						return
					}
					io.WriteString(w, "retry: 1000\n\n")
				})
				h := newHarness(t, stream, func(c *Config) { c.LeaveWindow = tt.window })
				srv = h.srv
				h.start()
				ended := make(chan string, tt.streams)
				for range tt.streams {
					go func() {
						resp, err := h.client.Get(h.url + "/watch")
						if err != nil {
							ended <- err.Error()
							return
						}
						defer resp.Body.Close()
						var last string
						sc := bufio.NewScanner(resp.Body)
						for sc.Scan() {
							if sc.Text() != "" {
								last = sc.Text()
							}
						}
						ended <- last
					}()
				}
				synctest.Wait()
				if n := srv.Stats().LongLivedOpen; n != int64(tt.streams) {
					t.Fatalf("%d long-lived requests open before the signal, want %d", n, tt.streams)
				}
				signalled = time.Now()
				h.signal()
				h.wait()
				if got := time.Since(signalled); got != tt.drainEnd {
					t.Errorf("the drain ended at +%s, want +%s", got, tt.drainEnd)
				}
				mu.Lock() // a cut handler may still be returning
				got := slices.Sorted(slices.Values(turns))
				mu.Unlock()
				if !slices.Equal(got, tt.turns) {
					t.Errorf("turns at %v, want %v", got, tt.turns)
				}
				for range tt.streams {
					last := testutil.Receive(t, "a stream to end", ended)
					if !tt.ignore && last != "retry: 1000" {
						t.Errorf("a stream ended with %q, want the retry: hint", last)
					}
				}
				st := srv.Stats()
				if st.End != tt.end || st.LongLivedAsked != tt.asked || st.LongLivedLeft != tt.left || st.LongLivedCut != tt.cut || st.LongLivedOpen != 0 {
					t.Errorf("end=%q asked=%d left=%d cut=%d open=%d, want %q %d %d %d 0",
						st.End, st.LongLivedAsked, st.LongLivedLeft, st.LongLivedCut, st.LongLivedOpen, tt.end, tt.asked, tt.left, tt.cut)
				}
			})
		})
	}
}

// A request declared once the asking has begun is asked at once; one that
// leaves before its turn is neither asked nor counted as left.
func TestLongLivedLateAndEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var l longLived
		early, leftEarly := l.add(context.Background())
		_, leftWaiting := l.add(context.Background())
		defer leftWaiting()
		leftEarly()
		if context.Cause(early) == ErrTurnToLeave {
			t.Fatal("a request that left was asked")
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go l.spread(ctx, time.Hour)
		synctest.Wait()
		late, leftLate := l.add(context.Background())
		if context.Cause(late) != ErrTurnToLeave {
			t.Fatalf("a request declared during the asking: cause %v, want ErrTurnToLeave", context.Cause(late))
		}
		leftLate()
		if a, lf := l.asked.Load(), l.left.Load(); a != 2 || lf != 1 {
			t.Fatalf("asked=%d left=%d, want 2 (the waiting one at once, the late one) and 1", a, lf)
		}
	})
}
