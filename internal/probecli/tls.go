//go:build !probe_notls

package probecli

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"

	"github.com/drainwell/drainwell/internal/marker"
)

// tlsConfig is *tls.Config in this build (a stand-in under probe_notls).
type tlsConfig = tls.Config

// tlsOptions are the TLS flags `probe grpc` and `probe http` share, with
// grpc-health-probe's names.
type tlsOptions struct {
	enabled, noVerify                         *bool
	caCert, clientCert, clientKey, serverName *string
}

func tlsFlags(fs *flag.FlagSet) *tlsOptions {
	return &tlsOptions{
		enabled:    fs.Bool("tls", false, "use TLS (probe http: implied by https://)"),
		noVerify:   fs.Bool("tls-no-verify", false, "do not verify the server's certificate, as the kubelet's httpGet with scheme HTTPS does not"),
		caCert:     fs.String("tls-ca-cert", "", "PEM file of the CAs to verify the server with (default: the system's)"),
		clientCert: fs.String("tls-client-cert", "", "PEM client certificate, for mTLS"),
		clientKey:  fs.String("tls-client-key", "", "PEM key of --tls-client-cert"),
		serverName: fs.String("tls-server-name", "", "name to verify the server's certificate against and send as SNI (default: the host)"),
	}
}

// config returns the TLS configuration for addr, or nil without TLS. Bad
// flags and unreadable files are usage errors, named.
func (o *tlsOptions) config(addr string, alpn ...string) (*tlsConfig, error) {
	usage := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{marker.ErrUsage}, a...)...)
	}
	if !*o.enabled {
		for name, v := range map[string]bool{"--tls-no-verify": *o.noVerify, "--tls-ca-cert": *o.caCert != "",
			"--tls-client-cert": *o.clientCert != "", "--tls-client-key": *o.clientKey != "", "--tls-server-name": *o.serverName != ""} {
			if v {
				return nil, usage("%s without --tls", name)
			}
		}
		return nil, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, usage("%v", err)
	}
	cfg := &tls.Config{
		ServerName:         host,
		NextProtos:         alpn,
		InsecureSkipVerify: *o.noVerify, // #nosec G402 -- only on --tls-no-verify, as the kubelet's HTTPS probe
		MinVersion:         tls.VersionTLS12,
	}
	if *o.serverName != "" {
		cfg.ServerName = *o.serverName
	}
	if *o.caCert != "" {
		pem, err := os.ReadFile(*o.caCert)
		if err != nil {
			return nil, usage("--tls-ca-cert: %v", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, usage("--tls-ca-cert %s: no PEM certificate in it", *o.caCert)
		}
	}
	switch {
	case (*o.clientCert == "") != (*o.clientKey == ""):
		return nil, usage("--tls-client-cert and --tls-client-key go together")
	case *o.clientCert != "":
		pair, err := tls.LoadX509KeyPair(*o.clientCert, *o.clientKey)
		if err != nil {
			return nil, usage("--tls-client-cert/--tls-client-key: %v", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// dial opens a TCP connection to addr and, with cfg, TLS over it, within
// ctx. A TLS failure says so.
func dial(ctx context.Context, addr string, cfg *tlsConfig) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("deadline: no connection to %s", addr)
		}
		return nil, err
	}
	if cfg == nil {
		return conn, nil
	}
	tc := tls.Client(conn, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = conn.Close() // the handshake's error is the one to report
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("deadline: TLS handshake with %s", addr)
		}
		return nil, fmt.Errorf("TLS: %w", err)
	}
	if p := tc.ConnectionState().NegotiatedProtocol; len(cfg.NextProtos) > 0 && p != "" && p != cfg.NextProtos[0] {
		_ = tc.Close() // as above
		return nil, fmt.Errorf("TLS: the server chose protocol %q, not %q", p, cfg.NextProtos[0])
	}
	return tc, nil
}
