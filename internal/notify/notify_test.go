package notify_test

import (
	"sync"
	"testing"

	"github.com/heraldbus/herald/internal/notify"
)

// A waiter wakes at each Broadcast, sees the condition hold once the state
// reaches it, and never misses a change made between its check and its wait.
func TestWaitSeesEveryChange(t *testing.T) {
	var (
		mu      sync.Mutex
		n       int
		changed notify.Changed
	)
	const want = 1000
	go func() {
		for range want {
			mu.Lock()
			n++
			changed.Broadcast()
			mu.Unlock()
		}
	}()
	checks := 0
	if !changed.Wait(&mu, func() bool { checks++; return n == want }, nil) {
		t.Fatal("Wait returned false without a done channel")
	}
	if checks < 1 || checks > want+1 {
		t.Errorf("cond called %d times for %d changes", checks, want)
	}
}

// Wait returns false once done is closed while the condition does not hold,
// and true at once when it holds, even with done closed.
func TestWaitEndsWithDone(t *testing.T) {
	var (
		mu      sync.Mutex
		changed notify.Changed
	)
	done := make(chan struct{})
	close(done)
	if changed.Wait(&mu, func() bool { return false }, done) {
		t.Error("Wait reported a condition that never held")
	}
	if !changed.Wait(&mu, func() bool { return true }, done) {
		t.Error("Wait missed a condition that held")
	}
	if !mu.TryLock() {
		t.Fatal("Wait returned with the mutex held")
	}
	mu.Unlock()
}
