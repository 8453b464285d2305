package main

import "testing"

// The API as text: exported declarations only, no comments, no bodies, an
// unexported field shown as filtered.
func TestAPI(t *testing.T) {
	got, err := API("testdata/shop", "example.com/shop")
	if err != nil {
		t.Fatal(err)
	}
	const want = `package shop // import "example.com/shop"

const Timeout = time.Second

type Order struct {
	ID string
	// contains filtered or unexported fields
}

func New(id string) *Order

func (o *Order) Total() int
`
	if got != want {
		t.Fatalf("API =\n%s\nwant\n%s", got, want)
	}
}
