package memory

// ringMin is the smallest buffer a ring keeps once it has grown; below it, shrinking
// saves too little to pay for the copy.
const ringMin = 64

// A ring is a double-ended queue on a circular buffer whose length is a power of two.
// Popped slots are zeroed so the ring does not keep events alive for the collector.
type ring[T any] struct {
	buf  []T
	head int // index of the first element
	n    int // number of elements
	// peak is the largest n since pops was last reset; every len(buf)/4 pops the ring
	// shrinks when peak stayed under a quarter of the buffer, so the copy costs O(1)
	// per pop. Judging a whole period,
	// not the current length, keeps a queue that fills and drains in batches from
	// reallocating on every batch.
	peak, pops int
}

func (r *ring[T]) len() int { return r.n }

// at returns the i-th element from the front.
func (r *ring[T]) at(i int) T { return r.buf[(r.head+i)&(len(r.buf)-1)] }

func (r *ring[T]) pushBack(v T) {
	if r.n == len(r.buf) {
		r.resize(max(2*len(r.buf), ringMin))
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = v
	r.n++
	r.peak = max(r.peak, r.n)
}

func (r *ring[T]) pushFront(v T) {
	if r.n == len(r.buf) {
		r.resize(max(2*len(r.buf), ringMin))
	}
	r.head = (r.head - 1) & (len(r.buf) - 1)
	r.buf[r.head] = v
	r.n++
	r.peak = max(r.peak, r.n)
}

// popFront removes and returns the first element; the ring must not be empty.
func (r *ring[T]) popFront() T {
	var zero T
	v := r.buf[r.head]
	r.buf[r.head] = zero
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if r.pops++; r.pops >= len(r.buf)/4 {
		if len(r.buf) > ringMin && r.peak < len(r.buf)/4 {
			size := ringMin
			for size < 2*r.peak {
				size *= 2
			}
			r.resize(size)
		}
		r.pops, r.peak = 0, r.n
	}
	return v
}

// clear empties the ring and lets go of its buffer.
func (r *ring[T]) clear() { *r = ring[T]{} }

// resize moves the elements, in order, into a fresh buffer of size, a power of two no
// smaller than r.n.
func (r *ring[T]) resize(size int) {
	buf := make([]T, size)
	if r.n > 0 {
		end := r.head + r.n
		if end <= len(r.buf) {
			copy(buf, r.buf[r.head:end])
		} else {
			k := copy(buf, r.buf[r.head:])
			copy(buf[k:], r.buf[:end-len(r.buf)])
		}
	}
	r.buf, r.head = buf, 0
}
