// Package probetls is the probe's TLS stack: crypto/tls behind
// probecli.TLSClient, linked only by cmd/probe-tls.
package probetls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"

	"github.com/drainwell/drainwell/internal/marker"
	"github.com/drainwell/drainwell/internal/probecli"
)

// Client is a probecli.TLSClient: it verifies the server against
// --tls-ca-cert (or the system's CAs) and the host or --tls-server-name,
// unless --tls-no-verify; it presents --tls-client-cert for mTLS.
func Client(o probecli.TLSOptions, addr string, alpn ...string) (probecli.Handshake, error) {
	usage := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{marker.ErrUsage}, a...)...)
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usage("%v", err)
	}
	cfg := &tls.Config{
		ServerName:         host,
		NextProtos:         alpn,
		InsecureSkipVerify: o.NoVerify, // #nosec G402 -- only on --tls-no-verify, as the kubelet's HTTPS probe
		MinVersion:         tls.VersionTLS12,
	}
	if o.ServerName != "" {
		cfg.ServerName = o.ServerName
	}
	if o.CACert != "" {
		pem, err := os.ReadFile(o.CACert)
		if err != nil {
			return nil, usage("--tls-ca-cert: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usage("--tls-ca-cert %s: no PEM certificate in it", o.CACert)
		}
	}
	switch {
	case (o.ClientCert == "") != (o.ClientKey == ""):
		return nil, usage("--tls-client-cert and --tls-client-key go together")
	case o.ClientCert != "":
		pair, err := tls.LoadX509KeyPair(o.ClientCert, o.ClientKey)
		if err != nil {
			return nil, usage("--tls-client-cert/--tls-client-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return func(ctx context.Context, conn net.Conn) (net.Conn, error) {
		tc := tls.Client(conn, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			return nil, err
		}
		if p := tc.ConnectionState().NegotiatedProtocol; len(alpn) > 0 && p != "" && p != alpn[0] {
			return nil, fmt.Errorf("the server chose protocol %q, not %q", p, alpn[0])
		}
		return tc, nil
	}, nil
}
