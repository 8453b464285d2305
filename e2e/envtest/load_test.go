package envtestproof

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// outcome is how the API server answered a create.
type outcome int

const (
	created       outcome = iota
	denied                // the webhook answered and denied it
	webhookFailed         // the API server could not call the webhook: refused
	otherError            // anything else
)

func (o outcome) String() string {
	return [...]string{"created", "denied", "webhook call failed", "other error"}[o]
}

// classify reads the API server's answer to a create.
func classify(err error) outcome {
	switch {
	case err == nil:
		return created
	case strings.Contains(err.Error(), "denied the request"):
		return denied
	case strings.Contains(err.Error(), "failed calling webhook"):
		return webhookFailed
	default:
		return otherError
	}
}

// record is one create the load sent.
type record struct {
	name    string
	deny    bool // labelled to be denied
	sent    time.Time
	outcome outcome
	err     string
}

// load creates ConfigMaps through the API server at a steady rate, each a
// fresh name, every tenth labelled to be denied by the webhook.
type load struct {
	client    kubernetes.Interface
	namespace string
	rate      int // creates per second
	workers   int // creates in flight at most
	started   time.Time

	stop    context.CancelFunc
	done    chan struct{}
	mu      sync.Mutex
	records []record
}

func startLoad(client kubernetes.Interface, namespace string, rate, workers int) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{client: client, namespace: namespace, rate: rate, workers: workers,
		started: time.Now(), stop: cancel, done: make(chan struct{})}
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range jobs {
				l.create(n)
			}
		}()
	}
	go func() {
		defer close(l.done)
		defer wg.Wait()
		defer close(jobs)
		tick := time.NewTicker(time.Second / time.Duration(rate))
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			select {
			case <-ctx.Done():
				return
			case jobs <- n:
			}
		}
	}()
	return l
}

func (l *load) create(n int) {
	r := record{name: fmt.Sprintf("load-%06d", n), deny: n%10 == 9, sent: time.Now()}
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: r.name, Namespace: l.namespace},
		Data:       map[string]string{"n": fmt.Sprint(n)},
	}
	if r.deny {
		cm.Labels = map[string]string{denyLabel: "true"}
	}
	// Above the webhook's timeoutSeconds (10): the API server answers first.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := l.client.CoreV1().ConfigMaps(l.namespace).Create(ctx, cm, metav1.CreateOptions{})
	r.outcome = classify(err)
	if err != nil {
		r.err = err.Error()
	}
	l.mu.Lock()
	l.records = append(l.records, r)
	l.mu.Unlock()
}

// count is how many creates have been answered so far.
func (l *load) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.records)
}

// finish stops sending, waits for the creates in flight and returns every
// record.
func (l *load) finish() []record {
	l.stop()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]record(nil), l.records...)
}

// tally counts the records by label and outcome.
type tally struct {
	allowed, allowedRefused, allowedOther int
	denyLabelled, denyDenied              int
	firstRefusals                         []record
}

func count(records []record) tally {
	var s tally
	for _, r := range records {
		if r.deny {
			s.denyLabelled++
			if r.outcome == denied {
				s.denyDenied++
			} else if len(s.firstRefusals) < 5 {
				s.firstRefusals = append(s.firstRefusals, r)
			}
			continue
		}
		s.allowed++
		switch r.outcome {
		case created:
		case webhookFailed:
			s.allowedRefused++
		default:
			s.allowedOther++
		}
		if r.outcome != created && len(s.firstRefusals) < 5 {
			s.firstRefusals = append(s.firstRefusals, r)
		}
	}
	return s
}
