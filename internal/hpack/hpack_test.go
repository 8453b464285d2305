package hpack

import (
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

// Blocks from x/net's encoder (Huffman on, dynamic table limited to 256
// bytes so that entries are evicted), decoded in order by one Decoder.
func TestDecodeSequence(t *testing.T) {
	date, loc := Field{"date", "Mon, 21 Oct 2013 20:13:21 GMT"}, Field{"location", "https://www.example.com"}
	tests := []struct {
		hex  string
		want []Field
	}{
		{"3fe1014e8264025885aec3771a4b6196d07abe941054d444a8200595040b8166e082a62d1bff6e919d29ad171863c78f0b97c8e9ae82ae43d3",
			[]Field{{":status", "302"}, {"cache-control", "private"}, date, loc}},
		{"4e03333037c1c0bf", // three fields from the dynamic table
			[]Field{{":status", "307"}, {"cache-control", "private"}, date, loc}},
		{"885f8b1d75d0620d263d4c4d656440889acac8b21234da8f013540899acac8b5254207317f8bb6aeb51fc54a20b677310b4086f2b47e92547f0700ff7e7c22c3a9",
			[]Field{{":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", "5"}, {"grpc-message", "unknown service"}, {"x-bytes", "\x00\xff~|\"é"}}},
	}
	d := NewDecoder(4096, 1<<16)
	for i, tt := range tests {
		p, _ := hex.DecodeString(tt.hex)
		got, err := d.Decode(p)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Fatalf("block %d: %q, want %q", i, got, tt.want)
		}
	}
	if d.used > 256 {
		t.Fatalf("dynamic table holds %d bytes over its 256 limit", d.used)
	}
}

func TestRoundTripLiteral(t *testing.T) {
	fields := []Field{{":path", "/grpc.health.v1.Health/Check"}, {"x-long", string(make([]byte, 300))}, {"", ""}}
	var p []byte
	for _, f := range fields {
		p = AppendLiteral(p, f)
	}
	got, err := NewDecoder(4096, 1024).Decode(p)
	if err != nil || !reflect.DeepEqual(got, fields) {
		t.Fatalf("Decode = %q, %v; want %q", got, err, fields)
	}
}

func TestInvalid(t *testing.T) {
	tests := map[string]string{
		"index 0":              "80",
		"index past the table": "ff00",
		"truncated integer":    "ff",
		"truncated string":     "0005616263",
		"huge integer":         "1fffffffffffffffffffff01",
		"table size too big":   "3fe17f",
		"bad padding":          "0082fffe00", // a name whose Huffman padding is not all ones
		"string over the cap":  "007f8101",
	}
	for name, h := range tests {
		t.Run(name, func(t *testing.T) {
			p, _ := hex.DecodeString(h)
			if _, err := NewDecoder(4096, 64).Decode(p); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Decode(%s) = %v, want ErrInvalid", h, err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, h := range []string{"885f8b1d75d0620d263d4c4d6564", "4e03333037c1c0bf", "3fe1014e82"} {
		p, _ := hex.DecodeString(h)
		f.Add(p)
	}
	f.Fuzz(func(t *testing.T, p []byte) {
		fields, err := NewDecoder(4096, 1<<10).Decode(p)
		for _, fl := range fields {
			if err == nil && (len(fl.Name) > 1<<10 || len(fl.Value) > 1<<10) {
				t.Fatalf("field over the cap: %d, %d", len(fl.Name), len(fl.Value))
			}
		}
	})
}
