package faults_test

import (
	"testing"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
)

// Fault 3: a process dies with 100 events delivered to its handler and not
// acknowledged. Its connection is closed abruptly (nothing is acked, nacked
// or drained: what the server sees when a process is killed); a new process
// with the same handler name gets all 100, after AckWait.
func TestCrashBeforeAck(t *testing.T) {
	// Prefetch 1: each of the dying process's 100 workers holds exactly the
	// one event it is handling.
	be := natsBackend(t, func(c *hnats.Config) { c.Prefetch = 1 })
	dying, trA := be.unstartedBus(t)
	crashBeforeAck(t, dying, func() *bus.Bus { return be.bus(t) },
		func() {
			ci := be.consumer(t, crashHandler, eventName)
			if ci.NumAckPending != crashEvents {
				t.Fatalf("before the crash the consumer has %d events unacknowledged, want %d", ci.NumAckPending, crashEvents)
			}
		},
		func() { trA.(*hnats.Transport).Conn().Close() },
		func() { be.settled(t, crashHandler) },
		func(f *figures) {
			f.transport = "nats"
			f.add("ack_wait", be.cfg.AckWait)
		})
}
