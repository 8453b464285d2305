package ctrldrain

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"

	"sigs.k8s.io/controller-runtime/pkg/certwatcher"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/webhook"

	"github.com/drainwell/drainwell/pkg/health"
)

// errNotStarted is what a TLS handshake and the webhook's readiness check
// say before the manager has started the webhook server.
var errNotStarted = errors.New("webhook server not started yet")

// WebhookServer is a controller-runtime webhook.Server that a
// health.Server serves and drains. Give it to the manager as
// manager.Options.WebhookServer; Register, ctrl.NewWebhookManagedBy and
// the builder's webhooks work as with webhook.NewServer.
//
// Its listener is one of the health.Server's (AddHTTP): it accepts from
// Run, keeps serving through the drain delay, ends keep-alive connections
// without racing the API server, and lets the admission requests in flight
// finish. Their contexts end at the shutdown deadline, not with the
// manager's.
type WebhookServer struct {
	inner    *webhook.DefaultServer // registers the hooks, with controller-runtime's metrics
	mux      *http.ServeMux         // inner's, which the listener serves
	tls      *tls.Config            // the caller's, served by the listener
	protocol *http.Protocols

	ownCert   bool                                    // no TLSOpts set a certificate: Start loads CertDir's
	cert      atomic.Pointer[certwatcher.CertWatcher] // set by Start when ownCert
	clientTLS atomic.Pointer[tls.Config]              // set by Start when ClientCAName is set
	started   atomic.Bool

	mu          sync.Mutex
	open        int           // connections open on the listener
	closed      bool          // the listener is closed (its http.Server shuts down)
	drainedOnce chan struct{} // closed once closed and no connection is open
}

// NewWebhookServer returns a webhook server with controller-runtime's
// options, served on a listener that srv adds (Host:Port, 9443 by
// default). As webhook.NewServer does, it reads CertDir's CertName and
// KeyName when the manager starts it, and reloads them when they change,
// unless a TLSOpts function sets GetCertificate; ClientCAName, when set,
// makes client certificates required. The NextProtos a TLSOpts function
// sets are honoured: ["http/1.1"], as kubebuilder's scaffolding sets it,
// turns HTTP/2 off. Call it before srv runs.
//
// It adds the readiness check "webhook", which fails until the manager has
// started the server.
func NewWebhookServer(srv *health.Server, opts webhook.Options) *WebhookServer {
	return newWebhookServer(srv, opts, nil)
}

// newWebhookServer is NewWebhookServer on ln, when not nil: the tests'
// listener on port 0, which controller-runtime's options take for 9443.
func newWebhookServer(srv *health.Server, opts webhook.Options, ln net.Listener) *WebhookServer {
	o := withDefaults(opts)
	inner, _ := webhook.NewServer(o).(*webhook.DefaultServer)
	w := &WebhookServer{inner: inner, mux: o.WebhookMux, drainedOnce: make(chan struct{})}

	cfg := &tls.Config{NextProtos: []string{"h2"}} // controller-runtime's default
	for _, opt := range o.TLSOpts {
		opt(cfg)
	}
	if cfg.GetCertificate == nil && cfg.GetConfigForClient == nil && len(cfg.Certificates) == 0 {
		w.ownCert = true
		cfg.GetCertificate = w.certificate
	}
	// net/http adds "h2" to the NextProtos of a server it serves with TLS
	// unless its Protocols leave HTTP/2 out.
	w.protocol = new(http.Protocols)
	w.protocol.SetHTTP1(true)
	w.protocol.SetHTTP2(slices.Contains(cfg.NextProtos, "h2"))
	w.tls = cfg.Clone()
	if o.ClientCAName != "" {
		cfg.GetConfigForClient = w.configForClient
	}

	hs := &http.Server{
		Addr:      net.JoinHostPort(o.Host, strconv.Itoa(o.Port)),
		Handler:   w.mux,
		TLSConfig: cfg,
		Protocols: w.protocol,
		// controller-runtime's own limits (internal/httpserver).
		MaxHeaderBytes:    1 << 20,
		ReadHeaderTimeout: defaultReadHeaderTimeout,
		IdleTimeout:       defaultIdleTimeout,
		ConnState:         w.connState,
	}
	hs.RegisterOnShutdown(w.listenerClosed)
	srv.AddHTTP(hs, ln)
	srv.AddCheck("webhook", func(context.Context) error {
		if !w.started.Load() {
			return errNotStarted
		}
		return nil
	})
	return w
}

// NeedLeaderElection is false: every replica serves admissions.
func (w *WebhookServer) NeedLeaderElection() bool { return false }

// Register serves hook at path, as webhook.DefaultServer.Register does
// (with controller-runtime's webhook metrics). It panics if path is
// registered twice.
func (w *WebhookServer) Register(path string, hook http.Handler) { w.inner.Register(path, hook) }

// WebhookMux returns the mux the listener serves.
func (w *WebhookServer) WebhookMux() *http.ServeMux { return w.mux }

// withDefaults fills in opts as controller-runtime does.
func withDefaults(opts webhook.Options) webhook.Options {
	if opts.WebhookMux == nil {
		opts.WebhookMux = http.NewServeMux()
	}
	if opts.Port <= 0 {
		opts.Port = webhook.DefaultPort
	}
	if opts.CertDir == "" {
		opts.CertDir = filepath.Join(os.TempDir(), "k8s-webhook-server", "serving-certs")
	}
	if opts.CertName == "" {
		opts.CertName = "tls.crt"
	}
	if opts.KeyName == "" {
		opts.KeyName = "tls.key"
	}
	return opts
}

// StartedChecker is healthy once the manager has started the server and
// its certificate is loaded. The drain does not change it: add the
// readiness of the drain with ReadyzCheck.
func (w *WebhookServer) StartedChecker() healthz.Checker {
	return func(*http.Request) error {
		if !w.started.Load() {
			return errNotStarted
		}
		return nil
	}
}

// Start is called by the manager. It loads the certificate (and the
// client CA) and returns when ctx ends. It does not serve: the
// health.Server does, and the listener's drain is not tied to ctx.
func (w *WebhookServer) Start(ctx context.Context) error {
	o := w.inner.Options // withDefaults'
	if o.ClientCAName != "" {
		pool, err := readCA(filepath.Join(o.CertDir, o.ClientCAName))
		if err != nil {
			return err
		}
		cfg := w.tls.Clone()
		cfg.ClientCAs, cfg.ClientAuth = pool, tls.RequireAndVerifyClientCert
		cfg.NextProtos = nextProtos(cfg.NextProtos, *w.protocol)
		w.clientTLS.Store(cfg)
	}
	if w.ownCert {
		watcher, err := certwatcher.New(filepath.Join(o.CertDir, o.CertName), filepath.Join(o.CertDir, o.KeyName))
		if err != nil {
			return fmt.Errorf("webhook certificate: %w", err)
		}
		w.cert.Store(watcher)
		go func() { _ = watcher.Start(ctx) }() // it logs its own errors
	}
	w.started.Store(true)
	<-ctx.Done()
	return nil
}

// configForClient is the listener's GetConfigForClient when ClientCAName
// is set: the listener's config with the client CA, once Start has read it.
// (The listener copies its config when it begins serving, before Start.)
func (w *WebhookServer) configForClient(*tls.ClientHelloInfo) (*tls.Config, error) {
	cfg := w.clientTLS.Load()
	if cfg == nil {
		return nil, errNotStarted
	}
	return cfg, nil
}

// certificate is the listener's GetCertificate when the caller set none:
// the watcher's, once Start has loaded it.
func (w *WebhookServer) certificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	watcher := w.cert.Load()
	if watcher == nil {
		return nil, errNotStarted
	}
	return watcher.GetCertificate(hello)
}

// readCA reads a PEM bundle of client CAs.
func readCA(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path) // #nosec G304 -- the caller's CertDir and ClientCAName
	if err != nil {
		return nil, fmt.Errorf("webhook client CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("webhook client CA: no certificate in %s", path)
	}
	return pool, nil
}

// nextProtos is what net/http offers in ALPN for protos, as it adjusts a
// TLS server's NextProtos.
func nextProtos(offered []string, protos http.Protocols) []string {
	out := slices.DeleteFunc(slices.Clone(offered), func(p string) bool {
		return (p == "h2" && !protos.HTTP2()) || (p == "http/1.1" && !protos.HTTP1())
	})
	if protos.HTTP2() && !slices.Contains(out, "h2") {
		out = append(out, "h2")
	}
	if protos.HTTP1() && !slices.Contains(out, "http/1.1") {
		out = append(out, "http/1.1")
	}
	return out
}

// connState counts the listener's connections, so that drained can tell
// when the last one has closed.
func (w *WebhookServer) connState(_ net.Conn, state http.ConnState) {
	w.mu.Lock()
	defer w.mu.Unlock()
	switch state {
	case http.StateNew:
		w.open++
	case http.StateClosed, http.StateHijacked:
		w.open--
	}
	w.checkDrained()
}

// listenerClosed runs when the drain shuts the listener's http.Server
// down: it no longer accepts, and its HTTP/1 connections have ended.
func (w *WebhookServer) listenerClosed() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.closed = true
	w.checkDrained()
}

func (w *WebhookServer) checkDrained() {
	if w.closed && w.open == 0 {
		select {
		case <-w.drainedOnce:
		default:
			close(w.drainedOnce)
		}
	}
}

// drained is closed once the listener is closed and its last connection
// has ended: no admission request is in flight or can arrive.
func (w *WebhookServer) drained() <-chan struct{} { return w.drainedOnce }
