// Package notify lets goroutines wait, without polling, for a condition on
// state that a mutex guards, until the condition holds or a done channel
// closes (which sync.Cond cannot wait for): whoever changes the state calls
// [Changed.Broadcast], and a waiter calls [Changed.Wait] with the condition.
package notify

import "sync"

// Changed is the "state changed" broadcast of the state that one mutex
// guards. Its methods are called with that mutex, and only that one, as
// documented. The zero value is ready to use.
type Changed struct {
	ch chan struct{} // closed at the next Broadcast; nil while nobody waits
}

// Broadcast wakes every goroutine waiting in [Changed.Wait]. Call it with
// the mutex held, after changing the state.
func (c *Changed) Broadcast() {
	if c.ch != nil {
		close(c.ch)
		c.ch = nil
	}
}

// Wait waits until cond holds or done is closed, and reports whether cond
// held. It calls cond with mu held, at once and after each Broadcast, and
// returns with mu unlocked; call it with mu unlocked.
func (c *Changed) Wait(mu sync.Locker, cond func() bool, done <-chan struct{}) bool {
	for {
		mu.Lock()
		if cond() {
			mu.Unlock()
			return true
		}
		if c.ch == nil {
			c.ch = make(chan struct{})
		}
		ch := c.ch
		mu.Unlock()
		select {
		case <-ch:
		case <-done:
			return false
		}
	}
}
