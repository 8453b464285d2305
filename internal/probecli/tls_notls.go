//go:build probe_notls

package probecli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"

	"github.com/drainwell/drainwell/internal/marker"
)

// A probe built with -tags probe_notls links no crypto/tls: smaller, and
// its start-up (every exec probe's cost) is the plain probe's. The TLS
// flags are still parsed, so that a manifest that passes them gets a clear
// error rather than an unknown flag.
type tlsOptions struct {
	enabled, noVerify                         *bool
	caCert, clientCert, clientKey, serverName *string
}

// tlsConfig stands for *tls.Config: always nil here.
type tlsConfig = struct{}

func tlsFlags(fs *flag.FlagSet) *tlsOptions {
	return &tlsOptions{
		enabled:    fs.Bool("tls", false, "use TLS (not in this build)"),
		noVerify:   fs.Bool("tls-no-verify", false, "(not in this build)"),
		caCert:     fs.String("tls-ca-cert", "", "(not in this build)"),
		clientCert: fs.String("tls-client-cert", "", "(not in this build)"),
		clientKey:  fs.String("tls-client-key", "", "(not in this build)"),
		serverName: fs.String("tls-server-name", "", "(not in this build)"),
	}
}

func (o *tlsOptions) config(string, ...string) (*tlsConfig, error) {
	if *o.enabled || *o.noVerify || *o.caCert != "" || *o.clientCert != "" || *o.clientKey != "" || *o.serverName != "" {
		return nil, fmt.Errorf("%w: this probe was built without TLS (-tags probe_notls)", marker.ErrUsage)
	}
	return nil, nil
}

func dial(ctx context.Context, addr string, _ *tlsConfig) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("deadline: no connection to %s", addr)
	}
	return conn, err
}
