package bustest

import "sync"

// KeyOrder checks that the events of each ordering key are handled in
// publish order, across any number of workers and processes of a handler.
// Publish each key's events with steps 0, 1, 2... and have the handler call
// Step at each attempt. The zero value is ready to use; it is safe for
// concurrent use.
type KeyOrder struct {
	mu         sync.Mutex
	last       map[string]int // the key's last step
	seen       map[string]map[int]bool
	distinct   int
	outOfOrder int
}

// Step records an attempt at step of key. It is in order if it is the key's
// next step (0 for the first), or its last one again (a retry or a
// redelivery); any other step counts as out of order. It returns whether it
// was in order.
func (o *KeyOrder) Step(key string, step int) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.last == nil {
		o.last, o.seen = map[string]int{}, map[string]map[int]bool{}
	}
	last, ok := o.last[key]
	if !ok {
		last = -1
	}
	in := step == last+1 || step == last
	if !in {
		o.outOfOrder++
	}
	o.last[key] = step
	if o.seen[key] == nil {
		o.seen[key] = map[int]bool{}
	}
	if !o.seen[key][step] {
		o.seen[key][step] = true
		o.distinct++
	}
	return in
}

// OutOfOrder returns how many steps were out of order.
func (o *KeyOrder) OutOfOrder() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.outOfOrder
}

// Distinct returns how many distinct (key, step) pairs were recorded: the
// events handled at least once.
func (o *KeyOrder) Distinct() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.distinct
}
