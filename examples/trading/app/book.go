package app

import "slices"

// An orderBook holds the resting LIMIT orders of one symbol, best first: bids by
// falling price, asks by rising price, and orders at the same price in arrival order.
// That is the seed's price-time priority, whose heaps order entries by (price, time).
type orderBook struct {
	bids, asks []restingOrder
}

// A restingOrder is the unfilled part of a LIMIT order waiting in a book.
type restingOrder struct {
	orderID  string
	traderID string
	price    float64
	quantity int
}

// opposite returns the side an incoming order of the given side trades against.
func (b *orderBook) opposite(side string) *[]restingOrder {
	if side == buySide {
		return &b.asks
	}
	return &b.bids
}

// crosses reports whether an incoming order may trade at a resting order's price: a
// MARKET order always, a LIMIT BUY up to its limit, a LIMIT SELL down to it.
func crosses(side, orderType string, limit, resting float64) bool {
	switch {
	case orderType == marketOrder:
		return true
	case side == buySide:
		return resting <= limit
	default:
		return resting >= limit
	}
}

// rest puts a LIMIT order's unfilled quantity into the book, behind every order at the
// same or a better price.
func (b *orderBook) rest(o restingOrder, side string) {
	orders, ahead := &b.bids, func(p float64) bool { return p >= o.price }
	if side == sellSide {
		orders, ahead = &b.asks, func(p float64) bool { return p <= o.price }
	}
	i := 0
	for i < len(*orders) && ahead((*orders)[i].price) {
		i++
	}
	*orders = slices.Insert(*orders, i, o)
}

// levels returns up to n resting orders of one side as price levels, best first; n < 0
// means all of them. Like the seed's get_book_depth, each order is its own level.
func levels(orders []restingOrder, n int) []level {
	if n < 0 || n > len(orders) {
		n = len(orders)
	}
	out := make([]level, n)
	for i, o := range orders[:n] {
		out[i] = level{Price: o.price, Quantity: o.quantity, TraderID: o.traderID}
	}
	return out
}
