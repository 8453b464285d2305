package e2e

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	xhpack "golang.org/x/net/http2/hpack"

	"github.com/drainwell/drainwell/internal/hpack"
)

// The probe's HPACK decoder against x/net's encoder: random header lists
// (names from the static table and new ones, values of every byte, Huffman
// where x/net chooses it, the dynamic table at random sizes, so entries are
// added, indexed and evicted), decoded in order by one decoder.
func TestHPACKAgainstXNet(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	names := []string{":status", "content-type", "grpc-status", "grpc-message", "date", "x-a", "x-custom-header", "set-cookie"}
	randString := func(n int) string {
		b := make([]byte, n)
		for i := range b {
			if rng.IntN(4) == 0 {
				b[i] = byte(rng.IntN(256))
			} else {
				b[i] = byte('a' + rng.IntN(26))
			}
		}
		return string(b)
	}
	for conn := range 50 {
		var buf bytes.Buffer
		enc := xhpack.NewEncoder(&buf)
		size := uint32(64 + rng.IntN(4096))
		enc.SetMaxDynamicTableSizeLimit(4096)
		enc.SetMaxDynamicTableSize(size)
		dec := hpack.NewDecoder(4096, 1<<16)
		for block := range 20 {
			buf.Reset()
			var want []hpack.Field
			for range 1 + rng.IntN(10) {
				f := xhpack.HeaderField{Name: names[rng.IntN(len(names))], Value: randString(rng.IntN(40))}
				if rng.IntN(5) == 0 {
					f.Name = "x-" + randString(1+rng.IntN(8))
				}
				f.Sensitive = rng.IntN(10) == 0
				if err := enc.WriteField(f); err != nil {
					t.Fatal(err)
				}
				want = append(want, hpack.Field{Name: f.Name, Value: f.Value})
			}
			got, err := dec.Decode(buf.Bytes())
			if err != nil {
				t.Fatalf("connection %d block %d (table %d): %v", conn, block, size, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("connection %d block %d: got %q, want %q", conn, block, got, want)
			}
		}
	}
}
