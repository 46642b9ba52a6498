package main

import (
	"testing"
	"time"
)

// A mailbox closed at once, before its Serve goroutine ran, stops: go-smtp's
// Close closes only the listeners Serve registered, so the mailbox closes its
// own (TestRunBadFlags hung so: the NATS connection was refused right after
// the mailbox started, and Close waited for a Serve that accepted forever).
func TestMailboxClosedAtOnce(t *testing.T) {
	for range 50 {
		m, err := startMailbox()
		if err != nil {
			t.Fatal(err)
		}
		closed := make(chan struct{})
		go func() {
			m.Close()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(testTimeout):
			t.Fatal("Close of a mailbox started just before did not return")
		}
	}
}
