package probecli

import (
	"context"
	"strings"
	"testing"

	"github.com/drainwell/drainwell/internal/testutil"
)

// FuzzLive feeds arbitrary flags and environment to `probe live`: it must
// exit 0, 1 or 2, never panic or hang, and say why in one line.
func FuzzLive(f *testing.F) {
	f.Add("--max-age=30s", "/tmp/live", "30s")
	f.Add("--file", "", "")
	f.Add("--timeout=-1s", "x", "0")
	f.Fuzz(func(t *testing.T, args, file, maxAge string) {
		e := env(map[string]string{"LIVE_FILE": file, "LIVE_MAX_AGE": maxAge})
		var out testutil.Buffer
		code := Main(context.Background(), nil, append([]string{"live"}, strings.Fields(args)...), e, &out, &out)
		if code < 0 || code > 2 {
			t.Fatalf("exit %d", code)
		}
		if code != 0 && strings.Count(strings.TrimSpace(out.String()), "\n") > 0 {
			t.Fatalf("more than one line: %q", out.String())
		}
	})
}
