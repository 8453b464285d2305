package probecli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"

	"github.com/drainwell/drainwell/internal/marker"
)

// TLSOptions are the values of the TLS flags `probe grpc` and `probe http`
// share, with grpc-health-probe's names.
type TLSOptions struct {
	Enabled, NoVerify                         bool
	CACert, ClientCert, ClientKey, ServerName string
}

// TLSClient makes the client side of TLS to addr (HOST:PORT) from the
// flags' values, offering the ALPN protocols alpn; a bad value or an
// unreadable file is an error that wraps marker.ErrUsage. The TLS stack is
// passed in rather than linked here: crypto/tls's package inits make every
// exec of the probe about 20% dearer, `probe live` included, and it doubles
// the binary (BENCHMARKS.md). cmd/probe passes none; cmd/probe-tls passes
// probetls.Client.
type TLSClient func(o TLSOptions, addr string, alpn ...string) (Handshake, error)

// Handshake runs the client's TLS handshake over conn within ctx and
// returns the TLS connection.
type Handshake func(ctx context.Context, conn net.Conn) (net.Conn, error)

func tlsFlags(fs *flag.FlagSet) *TLSOptions {
	o := &TLSOptions{}
	fs.BoolVar(&o.Enabled, "tls", false, "use TLS (probe http: implied by https://)")
	fs.BoolVar(&o.NoVerify, "tls-no-verify", false, "do not verify the server's certificate, as the kubelet's httpGet with scheme HTTPS does not")
	fs.StringVar(&o.CACert, "tls-ca-cert", "", "PEM file of the CAs to verify the server with (default: the system's)")
	fs.StringVar(&o.ClientCert, "tls-client-cert", "", "PEM client certificate, for mTLS")
	fs.StringVar(&o.ClientKey, "tls-client-key", "", "PEM key of --tls-client-cert")
	fs.StringVar(&o.ServerName, "tls-server-name", "", "name to verify the server's certificate against and send as SNI (default: the host)")
	return o
}

// handshake checks the TLS flags and returns the handshake to run for
// addr, or nil without TLS.
func (o *TLSOptions) handshake(client TLSClient, addr string, alpn ...string) (Handshake, error) {
	if !o.Enabled {
		for name, set := range map[string]bool{"--tls-no-verify": o.NoVerify, "--tls-ca-cert": o.CACert != "",
			"--tls-client-cert": o.ClientCert != "", "--tls-client-key": o.ClientKey != "", "--tls-server-name": o.ServerName != ""} {
			if set {
				return nil, fmt.Errorf("%w: %s without --tls", marker.ErrUsage, name)
			}
		}
		return nil, nil
	}
	if client == nil {
		return nil, fmt.Errorf("%w: this probe has no TLS, to stay small and fast: use probe-tls (the same commands and flags)", marker.ErrUsage)
	}
	return client(*o, addr, alpn...)
}

// dial opens a TCP connection to addr and, with hs, TLS over it, within
// ctx.
func dial(ctx context.Context, addr string, hs Handshake) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("deadline: no connection to %s", addr)
		}
		return nil, err
	}
	if hs == nil {
		return conn, nil
	}
	tc, err := hs(ctx, conn)
	if err != nil {
		_ = conn.Close() // the handshake's error is the one to report
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("deadline: TLS handshake with %s", addr)
		}
		return nil, fmt.Errorf("TLS: %w", err)
	}
	return tc, nil
}
