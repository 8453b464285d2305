package cluster

import (
	"io"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// The EndpointSlice conditions (README: "EndpointSlice conditions"): a pod
// is ready while it serves and is not terminating; a terminating pod that
// still serves is in the fallback set; a pod that does not serve is in
// neither, terminating or not.
func TestEndpointsOf(t *testing.T) {
	for _, tc := range []struct {
		name               string
		pods               []podEndpoint
		ready, terminating []string
	}{
		{name: "no pods"},
		{name: "serving, not terminating: ready",
			pods:  []podEndpoint{{addr: "a:1", serving: true}},
			ready: []string{"a:1"}},
		{name: "serving and terminating: the fallback set",
			pods:        []podEndpoint{{addr: "a:1", serving: true, terminating: true}},
			terminating: []string{"a:1"}},
		{name: "not serving: absent",
			pods: []podEndpoint{{addr: "a:1"}}},
		{name: "not serving and terminating: absent",
			pods: []podEndpoint{{addr: "a:1", terminating: true}}},
		{name: "a mix, each list sorted",
			pods: []podEndpoint{
				{addr: "d:1", serving: true, terminating: true},
				{addr: "c:1", serving: true},
				{addr: "e:1", terminating: true},
				{addr: "b:1", serving: true, terminating: true},
				{addr: "a:1", serving: true},
				{addr: "f:1"},
			},
			ready: []string{"a:1", "c:1"}, terminating: []string{"b:1", "d:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			eps := endpointsOf(tc.pods)
			if !slices.Equal(eps.ready, tc.ready) || !slices.Equal(eps.servingTerminating, tc.terminating) {
				t.Fatalf("endpointsOf = ready %v, serving terminating %v; want ready %v, serving terminating %v",
					eps.ready, eps.servingTerminating, tc.ready, tc.terminating)
			}
		})
	}
}

// The routing rule (README: "Routing"): the ready endpoints when there is
// one, the serving terminating ones only when there is no ready one, and
// nothing when there are neither.
func TestCandidates(t *testing.T) {
	for _, tc := range []struct {
		name string
		eps  endpoints
		want []string
	}{
		{name: "empty view: refused", eps: endpoints{}, want: nil},
		{name: "ready only", eps: endpoints{ready: []string{"r:1", "r:2"}}, want: []string{"r:1", "r:2"}},
		{name: "ready beside serving terminating: ready only",
			eps:  endpoints{ready: []string{"r:1"}, servingTerminating: []string{"t:1", "t:2"}},
			want: []string{"r:1"}},
		{name: "no ready endpoint: the fallback",
			eps:  endpoints{servingTerminating: []string{"t:1", "t:2"}},
			want: []string{"t:1", "t:2"}},
		{name: "empty, not nil, ready list: the fallback",
			eps:  endpoints{ready: []string{}, servingTerminating: []string{"t:1"}},
			want: []string{"t:1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.eps.candidates(); !slices.Equal(got, tc.want) {
				t.Fatalf("candidates = %v, want %v", got, tc.want)
			}
			// pick draws from the candidates, or returns "" when there are none.
			p := &proxy{view: tc.eps}
			for range 50 {
				got := p.pick()
				if len(tc.want) == 0 && got != "" {
					t.Fatalf("pick = %q from an empty view, want \"\"", got)
				}
				if len(tc.want) > 0 && !slices.Contains(tc.want, got) {
					t.Fatalf("pick = %q, want one of %v", got, tc.want)
				}
			}
		})
	}
}

// recorder is a proxy's applied callback that keeps each view it is told.
type recorder struct {
	mu    sync.Mutex
	views []endpoints
}

func (r *recorder) applied(eps endpoints) {
	r.mu.Lock()
	r.views = append(r.views, eps)
	r.mu.Unlock()
}

func (r *recorder) readies() [][]string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out [][]string
	for _, v := range r.views {
		out = append(out, v.ready)
	}
	return out
}

func view(addrs ...string) endpoints { return endpoints{ready: addrs} }

// The lag: a published view is in place one lag after its publication,
// not before, and views come into place in publication order.
func TestPublishAppliesAfterTheLag(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const lag = time.Second
		var rec recorder
		p := &proxy{lag: lag, applied: rec.applied}
		p.publish(view("a:1"))
		time.Sleep(300 * time.Millisecond)
		p.publish(view("b:1"))

		time.Sleep(lag - 300*time.Millisecond - time.Nanosecond) // just before the first view's lag ends
		synctest.Wait()
		if n := p.viewSize(); n != 0 || len(rec.readies()) != 0 {
			t.Fatalf("before the lag: view of %d, applied %v; want nothing applied", n, rec.readies())
		}
		time.Sleep(time.Nanosecond) // the first view's lag ends
		synctest.Wait()
		if got := p.pick(); got != "a:1" {
			t.Fatalf("one lag after the first publication: pick = %q, want a:1", got)
		}
		time.Sleep(300*time.Millisecond - time.Nanosecond) // just before the second view's
		synctest.Wait()
		if got := p.pick(); got != "a:1" {
			t.Fatalf("before the second view's lag ends: pick = %q, want a:1", got)
		}
		time.Sleep(time.Nanosecond)
		synctest.Wait()
		if got := p.pick(); got != "b:1" {
			t.Fatalf("one lag after the second publication: pick = %q, want b:1", got)
		}
		if got, want := rec.readies(), [][]string{{"a:1"}, {"b:1"}}; !slices.EqualFunc(got, want, slices.Equal) {
			t.Fatalf("applied %v, want %v", got, want)
		}
	})
}

// Without a lag a view is in place at once.
func TestPublishWithoutLag(t *testing.T) {
	var rec recorder
	p := &proxy{applied: rec.applied}
	p.publish(view("a:1"))
	if got := p.pick(); got != "a:1" {
		t.Fatalf("pick = %q right after publishing, want a:1", got)
	}
}

// An older view never replaces a newer one, whatever order their timers
// fire in: the view published second, applied first, stays.
func TestApplyKeepsTheNewerView(t *testing.T) {
	var rec recorder
	p := &proxy{applied: rec.applied}
	p.apply(2, view("new:1"))
	p.apply(1, view("old:1"))
	if got := p.pick(); got != "new:1" {
		t.Fatalf("pick = %q after the older view's late apply, want new:1", got)
	}
	if got, want := rec.readies(), [][]string{{"new:1"}}; !slices.EqualFunc(got, want, slices.Equal) {
		t.Fatalf("applied %v, want only %v (the older view skipped)", got, want)
	}
	p.apply(3, view("newest:1"))
	if got := p.pick(); got != "newest:1" {
		t.Fatalf("pick = %q, want newest:1", got)
	}
}

// Two views published at the same instant share a deadline; the second
// published is the one in place after both timers fire.
func TestPublishSameInstantKeepsTheLast(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var rec recorder
		p := &proxy{lag: time.Second, applied: rec.applied}
		for i := range 20 {
			p.publish(view(string(rune('a'+i)) + ":1"))
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if got := p.pick(); got != "t:1" {
			t.Fatalf("pick = %q after 20 views published at once, want the last, t:1", got)
		}
	})
}

// The endpoints each port's proxy is handed: the pods' addresses for that
// port, by their conditions.
func TestEndpointsChangedPublishesEachPort(t *testing.T) {
	var httpRec, grpcRec recorder
	c := &Cluster{
		cfg:     Config{Spec: Spec{Port: 8080, Ports: map[string]int{"http": 8080, "grpc": 9090}}},
		proxies: map[string]*proxy{"http": {applied: httpRec.applied}, "grpc": {applied: grpcRec.applied}},
	}
	pod := func(ip string, serving, terminating bool) *Pod {
		p := &Pod{Name: ip, IP: ip, gone: make(chan struct{})}
		p.ready.Store(serving)
		p.terminating.Store(terminating)
		return p
	}
	exited := pod("10.0.0.9", true, false)
	close(exited.gone)
	c.pods = []*Pod{pod("10.0.0.2", true, false), pod("10.0.0.3", true, true), pod("10.0.0.4", false, true), exited}
	c.endpointsChanged()
	for _, tc := range []struct {
		port            string
		p               *proxy
		ready, fallback []string
	}{
		{"http", c.proxies["http"], []string{"10.0.0.2:8080"}, []string{"10.0.0.3:8080"}},
		{"grpc", c.proxies["grpc"], []string{"10.0.0.2:9090"}, []string{"10.0.0.3:9090"}},
	} {
		if !slices.Equal(tc.p.view.ready, tc.ready) || !slices.Equal(tc.p.view.servingTerminating, tc.fallback) {
			t.Errorf("%s: view ready %v, serving terminating %v; want %v, %v",
				tc.port, tc.p.view.ready, tc.p.view.servingTerminating, tc.ready, tc.fallback)
		}
	}
}

// backend is a listener on loopback that writes its name on each
// connection and closes it.
func backend(t *testing.T, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name))
			c.Close()
		}
	}()
	return ln.Addr().String()
}

// through dials the proxy and returns what came back, or the error. A
// refused connection can fail the dial itself: the proxy's reset can come
// before the dialer reads the connect's outcome.
func through(p *proxy) (string, error) {
	c, err := net.DialTimeout("tcp", p.addr(), 5*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	if err == nil && len(b) == 0 {
		err = io.EOF // closed without a byte: nothing was routed
	}
	return string(b), err
}

// Through real connections on loopback: a ready endpoint takes every
// connection when there is one; with none ready the connection reaches a
// serving terminating endpoint; with an empty view it is refused, and
// counted.
func TestProxyRoutesFallsBackAndRefuses(t *testing.T) {
	var failed []error
	var mu sync.Mutex
	p, err := newProxy("127.0.0.1:0", 0, func(endpoints) {}, func(err error) {
		mu.Lock()
		failed = append(failed, err)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	ready, terminating := backend(t, "ready"), backend(t, "terminating")

	p.publish(endpoints{ready: []string{ready}, servingTerminating: []string{terminating}})
	for range 10 {
		if got, err := through(p); got != "ready" {
			t.Fatalf("with a ready endpoint: got %q (%v), want ready", got, err)
		}
	}

	p.publish(endpoints{servingTerminating: []string{terminating}})
	if got, err := through(p); got != "terminating" {
		t.Fatalf("with no ready endpoint: got %q (%v), want the fallback, terminating", got, err)
	}
	if n := p.refused.Load(); n != 0 {
		t.Fatalf("refused = %d before the view emptied, want 0", n)
	}

	p.publish(endpoints{})
	if got, err := through(p); err == nil || got != "" {
		t.Fatalf("with an empty view: got %q (%v), want the connection refused", got, err)
	}
	// handle counts the refusal before it closes the connection.
	if n := p.refused.Load(); n != 1 {
		t.Fatalf("refused = %d, want 1", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(failed) != 1 || failed[0].Error() != "no endpoint" {
		t.Fatalf("failed callback got %v, want one \"no endpoint\"", failed)
	}
	if n, ok := p.byTarget.Load(terminating); !ok || n.(*atomic.Int64).Load() != 1 {
		t.Fatalf("the connection to the fallback endpoint was not counted once")
	}
}
