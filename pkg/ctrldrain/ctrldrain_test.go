package ctrldrain

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-logr/logr"
	admissionv1 "k8s.io/api/admission/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/manager"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
	"sigs.k8s.io/controller-runtime/pkg/webhook"
	"sigs.k8s.io/controller-runtime/pkg/webhook/admission"

	"github.com/drainwell/drainwell/internal/testutil"
	"github.com/drainwell/drainwell/pkg/health"
)

func TestMain(m *testing.M) {
	ctrllog.SetLogger(logr.Discard()) // controller-runtime's global logger, quiet
	os.Exit(m.Run())
}

// operator is a manager with one validating webhook, as kubebuilder
// scaffolds it, run either under the drain or as the stock manager.
type operator struct {
	t       *testing.T
	addr    string // the webhook listener's
	certDir string
	client  *http.Client
	log     *testutil.Buffer
	stop    context.CancelFunc // the first signal
	result  chan error
	srv     *health.Server // nil for the stock manager
	release chan struct{}  // lets the "slow" admissions return
	slow    atomic.Int32   // "slow" admissions being handled
	// slowCtxErr is the context error a slow admission saw when released.
	slowCtxErr atomic.Pointer[string]
	managerEnd atomic.Int64 // when the manager's runnables saw their context end
	lastAnswer atomic.Int64 // when the webhook last answered
}

// startOperator starts an operator with its certificate in a new CertDir.
// Stock: webhook.NewServer and mgr.Start on a context the test cancels.
func startOperator(t *testing.T, stock bool, cfg health.Config, opts webhook.Options) *operator {
	t.Helper()
	return startOperatorWith(t, stock, cfg, opts, nil)
}

// startOperatorWith is startOperator with more options: withDir may change
// opts, given the CertDir, and return the client certificate the test's
// client shows (or nil).
func startOperatorWith(t *testing.T, stock bool, cfg health.Config, opts webhook.Options,
	withDir func(opts *webhook.Options, dir string) *tls.Certificate) *operator {
	t.Helper()
	o := &operator{t: t, log: &testutil.Buffer{}, result: make(chan error, 1), release: make(chan struct{})}
	dir := t.TempDir()
	pool := writeCert(t, dir)
	var clientCert *tls.Certificate
	if withDir != nil {
		clientCert = withDir(&opts, dir)
	}
	opts.CertDir = dir
	o.certDir = dir
	ln := testutil.Listen(t)
	o.addr = ln.Addr().String()

	var ws webhook.Server
	if stock {
		host, port, _ := net.SplitHostPort(o.addr)
		opts.Host, opts.Port = host, atoi(t, port)
		ln.Close() // the stock server listens itself
		ws = webhook.NewServer(opts)
	} else {
		cfg.Logger = slog.New(slog.NewTextHandler(o.log, nil))
		o.srv = health.New(cfg, nil)
		ws = newWebhookServer(o.srv, opts, ln)
	}
	mgr, err := manager.New(&rest.Config{Host: "https://127.0.0.1:1"}, manager.Options{
		WebhookServer:          ws,
		Metrics:                metricsserver.Options{BindAddress: "0"},
		HealthProbeBindAddress: "0",
	})
	if err != nil {
		t.Fatal(err)
	}
	mgr.GetWebhookServer().Register("/validate", &webhook.Admission{Handler: admission.HandlerFunc(o.admit)})
	err = mgr.Add(manager.RunnableFunc(func(ctx context.Context) error {
		<-ctx.Done()
		o.managerEnd.Store(time.Now().UnixNano())
		return nil
	}))
	if err != nil {
		t.Fatal(err)
	}

	ctx, stop := context.WithCancel(context.Background())
	o.stop = stop
	if stock {
		go func() { o.result <- mgr.Start(ctx) }()
	} else {
		if err := Add(o.srv, mgr); err != nil {
			t.Fatal(err)
		}
		go func() { o.result <- o.srv.Run(ctx) }()
	}
	t.Cleanup(func() {
		o.unblock()
		stop()
		select {
		case <-o.result:
		case <-time.After(testutil.Patience):
			t.Error("the operator did not stop")
		}
		if t.Failed() {
			t.Log(o.log.String())
		}
	})
	o.client = newClient(pool, nil)
	if clientCert != nil {
		o.client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{*clientCert}
	}
	testutil.WaitFor(t, "the webhook to answer", func() bool { return o.review(o.client, "first") == nil })
	return o
}

func (o *operator) unblock() {
	select {
	case <-o.release:
	default:
		close(o.release)
	}
}

// admit allows every object; one named "slow" waits for the test.
func (o *operator) admit(ctx context.Context, req admission.Request) admission.Response {
	defer o.lastAnswer.Store(time.Now().UnixNano())
	if req.Name == "slow" {
		o.slow.Add(1)
		<-o.release
		msg := fmt.Sprint(ctx.Err())
		o.slowCtxErr.Store(&msg)
	}
	return admission.Allowed("")
}

// review sends one AdmissionReview for a ConfigMap called name, as the API
// server does, and returns why it was not allowed.
func (o *operator) review(client *http.Client, name string) error {
	uid := types.UID(strconv.FormatInt(time.Now().UnixNano(), 10))
	body, err := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request: &admissionv1.AdmissionRequest{
			UID:       uid,
			Kind:      metav1.GroupVersionKind{Version: "v1", Kind: "ConfigMap"},
			Resource:  metav1.GroupVersionResource{Version: "v1", Resource: "configmaps"},
			Name:      name,
			Namespace: "default",
			Operation: admissionv1.Create,
			Object:    runtime.RawExtension{Raw: []byte(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"` + name + `"}}`)},
		},
	})
	if err != nil {
		return err
	}
	resp, err := client.Post("https://"+o.addr+"/validate", "application/json", bytes.NewReader(body))
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %s", resp.StatusCode, data)
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(data, &out); err != nil {
		return err
	}
	if out.Response == nil || out.Response.UID != uid || !out.Response.Allowed {
		return fmt.Errorf("not allowed: %s", data)
	}
	return nil
}

// newClient trusts pool and offers protos in ALPN (nil: HTTP/1.1 only).
func newClient(pool *x509.CertPool, protos []string) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, NextProtos: protos, MinVersion: tls.VersionTLS12}}
	if len(protos) > 0 {
		tr.ForceAttemptHTTP2 = true
	}
	return &http.Client{Transport: tr, Timeout: testutil.Patience}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeCert writes a self-signed certificate for 127.0.0.1 to dir as
// tls.crt and tls.key, and returns a pool that trusts it.
func writeCert(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: "webhook-" + strconv.FormatInt(time.Now().UnixNano(), 10)},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:         true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	write := func(name string, data []byte) {
		// Written beside, then renamed: a watcher never reads half a file.
		tmp := filepath.Join(dir, "."+name)
		if err := os.WriteFile(tmp, data, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	write("tls.key", pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	write("tls.crt", certPEM)
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(certPEM)
	return pool
}

// Through the drain, the webhook keeps answering: a new connection made
// after the signal is served (the Service still routes to the pod), an
// admission in flight at the signal finishes with its context alive, and
// the manager's context ends only after the webhook's last answer. The
// stock manager, the control, refuses new connections after the signal.
func TestAdmissionsThroughTheDrain(t *testing.T) {
	for _, stock := range []bool{false, true} {
		name := map[bool]string{false: "drain", true: "control: stock manager"}[stock]
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			o := startOperator(t, stock, health.Config{DrainDelay: 3 * time.Second, ShutdownTimeout: 20 * time.Second, IdleClose: 50 * time.Millisecond}, webhook.Options{})
			slow := make(chan error, 1)
			go func() {
				slow <- o.review(newClient(o.client.Transport.(*http.Transport).TLSClientConfig.RootCAs, nil), "slow")
			}()
			testutil.WaitFor(t, "the slow admission to arrive", func() bool { return o.slow.Load() == 1 })

			o.stop()
			if stock {
				// The stock server closes its listener at the signal.
				testutil.WaitFor(t, "the stock listener to refuse", func() bool { return testutil.Refused(o.addr) })
				o.unblock()
				testutil.Receive(t, "the slow admission", slow)
				return
			}
			testutil.Receive(t, "the drain to begin", o.srv.Draining())
			fresh := newClient(o.client.Transport.(*http.Transport).TLSClientConfig.RootCAs, nil)
			if err := o.review(fresh, "after-signal"); err != nil {
				t.Fatalf("a new connection during the drain delay: %v", err)
			}
			if err := o.review(o.client, "kept-alive"); err != nil {
				t.Fatalf("a keep-alive connection during the drain delay: %v", err)
			}
			// The delay is over and the listener closes: the admission in
			// flight holds the manager's context open.
			testutil.Receive(t, "the listeners to close", o.srv.NotReady())
			testutil.WaitFor(t, "the listener to close", func() bool { return o.log.Count("listener closed") > 0 })
			if ended := within(300*time.Millisecond, func() bool { return o.managerEnd.Load() != 0 }); ended {
				t.Fatal("the manager's context ended while an admission was in flight")
			}
			o.unblock()
			if err := testutil.Receive(t, "the slow admission", slow); err != nil {
				t.Fatalf("the admission in flight at the signal: %v", err)
			}
			if got := *o.slowCtxErr.Load(); got != "<nil>" {
				t.Errorf("the in-flight admission's context: %s, want alive", got)
			}
			if err := testutil.Receive(t, "Run to return", o.result); err != nil {
				t.Fatalf("Run: %v", err)
			}
			o.result <- nil // for the cleanup
			end, last := o.managerEnd.Load(), o.lastAnswer.Load()
			if end == 0 || end < last {
				t.Errorf("the manager's context ended at %d, before the webhook's last answer at %d", end, last)
			}
		})
	}
}

// within reports whether cond holds within d: a bounded look for what
// must not happen.
func within(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// The readiness check "webhook" fails until the manager has started the
// server. The manager's readyz check (ReadyzCheck) then follows the
// drain's policy: here, not ready at the signal.
func TestReadiness(t *testing.T) {
	srv := health.New(health.Config{}, nil)
	ws := newWebhookServer(srv, webhook.Options{}, testutil.Listen(t))
	if err := ws.StartedChecker()(nil); !errors.Is(err, errNotStarted) {
		t.Errorf("StartedChecker before Start: %v, want %v", err, errNotStarted)
	}

	o := startOperator(t, false, health.Config{DrainDelay: 2 * time.Second, DrainReadiness: health.NotReadyAtSignal}, webhook.Options{})
	check := ReadyzCheck(o.srv)
	req, err := http.NewRequest(http.MethodGet, "/readyz", nil)
	if err != nil {
		t.Fatal(err)
	}
	testutil.WaitFor(t, "readyz to pass", func() bool { return check(req) == nil })
	o.stop()
	testutil.Receive(t, "the drain to begin", o.srv.Draining())
	if err := check(req); err == nil {
		t.Error("readyz passed after the signal under NotReadyAtSignal")
	}
}

// The listener offers in ALPN what controller-runtime's own server offers
// for the same options: HTTP/2 by default, HTTP/1.1 only when a TLSOpts
// function sets NextProtos to ["http/1.1"] (kubebuilder's default, against
// HTTP/2 rapid reset).
func TestNextProtosAsControllerRuntime(t *testing.T) {
	http1Only := func(c *tls.Config) { c.NextProtos = []string{"http/1.1"} }
	tests := []struct {
		name string
		opts []func(*tls.Config)
		want string
	}{
		{"default", nil, "h2"},
		{"kubebuilder without HTTP/2", []func(*tls.Config){http1Only}, "no connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			for _, stock := range []bool{false, true} {
				o := startOperator(t, stock, health.Config{DrainDelay: health.NoDrainDelay}, webhook.Options{TLSOpts: tt.opts})
				pool := o.client.Transport.(*http.Transport).TLSClientConfig.RootCAs
				// A client that offers HTTP/2 alone gets it, or no connection.
				got := "no connection"
				conn, err := tls.Dial("tcp", o.addr, &tls.Config{RootCAs: pool, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS12})
				if err == nil {
					got = conn.ConnectionState().NegotiatedProtocol
					conn.Close()
				}
				if got != tt.want {
					t.Errorf("stock=%v: offering h2 alone: %q, want %q", stock, got, tt.want)
				}
				if err := o.review(newClient(pool, []string{"h2", "http/1.1"}), "alpn"); err != nil {
					t.Errorf("stock=%v: an admission over %s: %v", stock, got, err)
				}
			}
		})
	}
}

// A certificate written over CertDir's is served without a restart, as
// controller-runtime's certificate watcher serves it.
func TestCertificateReloaded(t *testing.T) {
	o := startOperator(t, false, health.Config{DrainDelay: health.NoDrainDelay}, webhook.Options{})
	dir := o.certDir
	pool := writeCert(t, dir)
	testutil.WaitFor(t, "the new certificate to be served", func() bool {
		return o.review(newClient(pool, nil), "reloaded") == nil
	})
}

// With ClientCAName, as with controller-runtime's server, a client must
// show a certificate that the CA signed: the API server's, when its
// admission configuration gives it one.
func TestClientCertificateRequired(t *testing.T) {
	for _, stock := range []bool{false, true} {
		o := startOperatorWith(t, stock, health.Config{DrainDelay: health.NoDrainDelay}, webhook.Options{},
			func(opts *webhook.Options, dir string) *tls.Certificate {
				opts.ClientCAName = "client-ca.crt"
				return writeClientCA(t, filepath.Join(dir, opts.ClientCAName))
			})
		pool := o.client.Transport.(*http.Transport).TLSClientConfig.RootCAs
		if err := o.review(newClient(pool, nil), "no-client-cert"); err == nil {
			t.Errorf("stock=%v: an admission without a client certificate was served", stock)
		}
		if err := o.review(o.client, "with-client-cert"); err != nil {
			t.Errorf("stock=%v: an admission with a client certificate: %v", stock, err)
		}
	}
}

// writeClientCA writes a new CA to path and returns a client certificate
// it signed.
func writeClientCA(t *testing.T, path string) *tls.Certificate {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client-ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "kube-apiserver"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
