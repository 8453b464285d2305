// Package hpack decodes HTTP/2 header blocks (RFC 7541) and encodes the
// few literal fields a one-call client sends, for the probe's gRPC check.
//
// It is x/net's hpack cut to what a client that makes one call needs, with
// its tables as constant data: linking it runs nothing at start-up (x/net's
// builds its static table's maps at init), and it keeps the probe binary on
// the standard library. Names and values are checked against x/net's encoder
// in e2e's TestHPACKAgainstXNet.
package hpack

import (
	"errors"
	"fmt"
)

// Field is a header field.
type Field struct{ Name, Value string }

// ErrInvalid is the error of a header block that is not valid HPACK.
var ErrInvalid = errors.New("hpack: invalid header block")

// Decoder decodes the header blocks of one connection, in order: they share
// the dynamic table.
type Decoder struct {
	maxSize  int     // SETTINGS_HEADER_TABLE_SIZE we advertised
	size     int     // the dynamic table's current limit
	used     int     // its entries' sizes
	dynamic  []Field // newest last
	maxField int     // longest name or value accepted
}

// NewDecoder returns a decoder for a connection that advertised a header
// table of maxSize bytes, accepting names and values up to maxField bytes.
func NewDecoder(maxSize, maxField int) *Decoder {
	return &Decoder{maxSize: maxSize, size: maxSize, maxField: maxField}
}

// Decode decodes one whole header block.
func (d *Decoder) Decode(p []byte) ([]Field, error) {
	var out []Field
	for len(p) > 0 {
		var f Field
		var err error
		b := p[0]
		switch {
		case b&0x80 != 0: // indexed field
			var i uint64
			if i, p, err = readInt(7, p); err != nil {
				return nil, err
			}
			if f, err = d.at(i); err != nil {
				return nil, err
			}
		case b&0xc0 == 0x40: // literal, added to the table
			if f, p, err = d.literal(6, p); err != nil {
				return nil, err
			}
			d.add(f)
		case b&0xe0 == 0x20: // dynamic table size update
			var n uint64
			if n, p, err = readInt(5, p); err != nil {
				return nil, err
			}
			if n > uint64(d.maxSize) { // #nosec G115 -- maxSize is a small positive int
				return nil, fmt.Errorf("%w: table size %d over %d", ErrInvalid, n, d.maxSize)
			}
			d.size = int(n) // #nosec G115 -- n <= maxSize, an int
			d.evict()
			continue
		default: // literal, not added (0000) or never added (0001)
			if f, p, err = d.literal(4, p); err != nil {
				return nil, err
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// at returns the field at index i of the static table then the dynamic one.
func (d *Decoder) at(i uint64) (Field, error) {
	switch {
	case i == 0:
		return Field{}, fmt.Errorf("%w: index 0", ErrInvalid)
	case i <= uint64(len(staticTable)):
		return staticTable[i-1], nil
	case i-uint64(len(staticTable)) <= uint64(len(d.dynamic)):
		return d.dynamic[len(d.dynamic)-int(i-uint64(len(staticTable)))], nil // #nosec G115 -- i is bounded by the tables above
	}
	return Field{}, fmt.Errorf("%w: index %d out of the tables", ErrInvalid, i)
}

// literal reads a literal field whose name index has an n-bit prefix.
func (d *Decoder) literal(n byte, p []byte) (Field, []byte, error) {
	idx, p, err := readInt(n, p)
	if err != nil {
		return Field{}, nil, err
	}
	var f Field
	if idx > 0 {
		named, err := d.at(idx)
		if err != nil {
			return Field{}, nil, err
		}
		f.Name = named.Name
	} else if f.Name, p, err = d.readString(p); err != nil {
		return Field{}, nil, err
	}
	if f.Value, p, err = d.readString(p); err != nil {
		return Field{}, nil, err
	}
	return f, p, nil
}

func (d *Decoder) add(f Field) {
	d.dynamic = append(d.dynamic, f)
	d.used += entrySize(f)
	d.evict()
}

// evict drops the oldest entries until the table fits its limit.
func (d *Decoder) evict() {
	for d.used > d.size && len(d.dynamic) > 0 {
		d.used -= entrySize(d.dynamic[0])
		d.dynamic = d.dynamic[1:]
	}
}

func entrySize(f Field) int { return len(f.Name) + len(f.Value) + 32 }

// readInt reads an integer with an n-bit prefix (RFC 7541, 5.1).
func readInt(n byte, p []byte) (uint64, []byte, error) {
	if len(p) == 0 {
		return 0, nil, fmt.Errorf("%w: truncated", ErrInvalid)
	}
	limit := uint64(1)<<n - 1
	v := uint64(p[0]) & limit
	p = p[1:]
	if v < limit {
		return v, p, nil
	}
	for shift := uint(0); ; shift += 7 {
		if len(p) == 0 {
			return 0, nil, fmt.Errorf("%w: truncated integer", ErrInvalid)
		}
		if shift > 56 {
			return 0, nil, fmt.Errorf("%w: integer too large", ErrInvalid)
		}
		b := p[0]
		p = p[1:]
		v += uint64(b&0x7f) << shift
		if b&0x80 == 0 {
			return v, p, nil
		}
	}
}

// readString reads a string literal, Huffman-coded or not (RFC 7541, 5.2).
func (d *Decoder) readString(p []byte) (string, []byte, error) {
	if len(p) == 0 {
		return "", nil, fmt.Errorf("%w: truncated", ErrInvalid)
	}
	huff := p[0]&0x80 != 0
	n, p, err := readInt(7, p)
	if err != nil {
		return "", nil, err
	}
	if n > uint64(len(p)) {
		return "", nil, fmt.Errorf("%w: truncated string", ErrInvalid)
	}
	// A Huffman code is at least 5 bits a byte: n bytes decode to at most
	// 8n/5 bytes.
	if (huff && n*8/5 > uint64(d.maxField)) || (!huff && n > uint64(d.maxField)) { // #nosec G115 -- maxField is a small positive int
		return "", nil, fmt.Errorf("%w: a string of %d bytes, over %d", ErrInvalid, n, d.maxField)
	}
	s, rest := p[:n], p[n:]
	if !huff {
		return string(s), rest, nil
	}
	out, err := huffmanDecode(s)
	return out, rest, err
}

// huffmanDecode decodes the canonical Huffman code of RFC 7541, Appendix B,
// from its code lengths, a bit at a time: a health check's headers are a
// few dozen bytes.
func huffmanDecode(s []byte) (string, error) {
	// Symbols by code length, then by value: a canonical code's order.
	var count [31]int
	for _, l := range huffmanCodeLen {
		count[l]++
	}
	var start [31]int // index of the first symbol of each length in sorted
	for l := 1; l < 31; l++ {
		start[l] = start[l-1] + count[l-1]
	}
	var sorted [256]byte
	next := start
	for sym, l := range huffmanCodeLen {
		sorted[next[l]] = byte(sym)
		next[l]++
	}
	out := make([]byte, 0, len(s)*8/5)
	code, length, first := 0, 0, 0 // first: the first code of this length
	index := 0                     // index in sorted of that first code
	for _, b := range s {
		for bit := 7; bit >= 0; bit-- {
			code = code<<1 | int(b>>bit&1)
			length++
			if length > 30 {
				return "", fmt.Errorf("%w: bad Huffman code", ErrInvalid)
			}
			first = (first + count[length-1]) << 1
			index += count[length-1]
			if code >= first && code-first < count[length] {
				out = append(out, sorted[index+code-first])
				code, length, first, index = 0, 0, 0, 0
			}
		}
	}
	// Padding: fewer than 8 bits, all ones (the start of EOS).
	if length > 7 || code != 1<<length-1 {
		return "", fmt.Errorf("%w: bad Huffman padding", ErrInvalid)
	}
	return string(out), nil
}

// AppendLiteral appends f as a literal field that is not added to the
// table (RFC 7541, 6.2.2), with both strings raw: what a client that sends
// a handful of fields once needs.
func AppendLiteral(dst []byte, f Field) []byte {
	dst = append(dst, 0)
	dst = appendString(dst, f.Name)
	return appendString(dst, f.Value)
}

func appendString(dst []byte, s string) []byte {
	dst = appendInt(dst, 7, 0, uint64(len(s)))
	return append(dst, s...)
}

// appendInt appends v with an n-bit prefix, first byte's other bits flags.
func appendInt(dst []byte, n, flags byte, v uint64) []byte {
	limit := uint64(1)<<n - 1
	if v < limit {
		return append(dst, flags|byte(v)) // #nosec G115 -- v < limit < 256
	}
	dst = append(dst, flags|byte(limit)) // #nosec G115 -- limit < 256
	v -= limit
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// staticTable is RFC 7541's Appendix A.
var staticTable = [...]Field{
	{":authority", ""},
	{":method", "GET"},
	{":method", "POST"},
	{":path", "/"},
	{":path", "/index.html"},
	{":scheme", "http"},
	{":scheme", "https"},
	{":status", "200"},
	{":status", "204"},
	{":status", "206"},
	{":status", "304"},
	{":status", "400"},
	{":status", "404"},
	{":status", "500"},
	{"accept-charset", ""},
	{"accept-encoding", "gzip, deflate"},
	{"accept-language", ""},
	{"accept-ranges", ""},
	{"accept", ""},
	{"access-control-allow-origin", ""},
	{"age", ""},
	{"allow", ""},
	{"authorization", ""},
	{"cache-control", ""},
	{"content-disposition", ""},
	{"content-encoding", ""},
	{"content-language", ""},
	{"content-length", ""},
	{"content-location", ""},
	{"content-range", ""},
	{"content-type", ""},
	{"cookie", ""},
	{"date", ""},
	{"etag", ""},
	{"expect", ""},
	{"expires", ""},
	{"from", ""},
	{"host", ""},
	{"if-match", ""},
	{"if-modified-since", ""},
	{"if-none-match", ""},
	{"if-range", ""},
	{"if-unmodified-since", ""},
	{"last-modified", ""},
	{"link", ""},
	{"location", ""},
	{"max-forwards", ""},
	{"proxy-authenticate", ""},
	{"proxy-authorization", ""},
	{"range", ""},
	{"referer", ""},
	{"refresh", ""},
	{"retry-after", ""},
	{"server", ""},
	{"set-cookie", ""},
	{"strict-transport-security", ""},
	{"transfer-encoding", ""},
	{"user-agent", ""},
	{"vary", ""},
	{"via", ""},
	{"www-authenticate", ""},
}

// huffmanCodeLen is the length in bits of each byte's code (RFC 7541,
// Appendix B); the code is canonical, so the lengths define it.
var huffmanCodeLen = [256]uint8{
	13, 23, 28, 28, 28, 28, 28, 28, 28, 24, 30, 28, 28, 30, 28, 28,
	28, 28, 28, 28, 28, 28, 30, 28, 28, 28, 28, 28, 28, 28, 28, 28,
	6, 10, 10, 12, 13, 6, 8, 11, 10, 10, 8, 11, 8, 6, 6, 6,
	5, 5, 5, 6, 6, 6, 6, 6, 6, 6, 7, 8, 15, 6, 12, 10,
	13, 6, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	7, 7, 7, 7, 7, 7, 7, 7, 8, 7, 8, 13, 19, 13, 14, 6,
	15, 5, 6, 5, 6, 5, 6, 6, 6, 5, 7, 7, 6, 6, 6, 5,
	6, 7, 6, 5, 5, 6, 7, 7, 7, 7, 7, 15, 11, 14, 13, 28,
	20, 22, 20, 20, 22, 22, 22, 23, 22, 23, 23, 23, 23, 23, 24, 23,
	24, 24, 22, 23, 24, 23, 23, 23, 23, 21, 22, 23, 22, 23, 23, 24,
	22, 21, 20, 22, 22, 23, 23, 21, 23, 22, 22, 24, 21, 22, 23, 23,
	21, 21, 22, 21, 23, 22, 23, 23, 20, 22, 22, 22, 23, 22, 22, 23,
	26, 26, 20, 19, 22, 23, 22, 25, 26, 26, 26, 27, 27, 26, 24, 25,
	19, 21, 26, 27, 27, 26, 27, 24, 21, 21, 26, 26, 28, 27, 27, 27,
	20, 24, 20, 21, 22, 21, 21, 23, 22, 22, 25, 25, 24, 24, 26, 23,
	26, 27, 26, 26, 27, 27, 27, 27, 27, 28, 27, 27, 27, 27, 27, 26,
}
