package memory

import "time"

// A scheduled entry waits in the schedule until at, then moves to the tail of the queue.
type scheduled struct {
	at    time.Time
	order uint64 // insertion order, so entries due at the same time keep it
	ent   entry
}

// A schedule is a binary min-heap of entries by (at, order).
type schedule []scheduled

func (s schedule) less(i, j int) bool {
	if s[i].at.Equal(s[j].at) {
		return s[i].order < s[j].order
	}
	return s[i].at.Before(s[j].at)
}

func (s *schedule) push(v scheduled) {
	*s = append(*s, v)
	h := *s
	for i := len(h) - 1; i > 0; {
		p := (i - 1) / 2
		if !h.less(i, p) {
			break
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

// pop removes and returns the earliest entry; the schedule must not be empty.
func (s *schedule) pop() scheduled {
	h := *s
	top := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = scheduled{} // let the collector have the event
	h = h[:last]
	for i := 0; ; {
		l, r, m := 2*i+1, 2*i+2, i
		if l < len(h) && h.less(l, m) {
			m = l
		}
		if r < len(h) && h.less(r, m) {
			m = r
		}
		if m == i {
			break
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
	*s = h
	return top
}
