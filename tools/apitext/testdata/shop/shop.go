// Package shop is apitext's test input.
package shop

import "time"

// Timeout is exported.
const Timeout = time.Second // and commented

const hidden = 1

// Order is an exported type.
type Order struct {
	// ID is exported.
	ID    string
	price int
}

// Total is a method.
func (o *Order) Total() int { return o.price + hidden }

func (o *Order) secret() {}

// New is a constructor.
func New(id string) *Order { return &Order{ID: id} }
