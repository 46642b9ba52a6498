package benchmarks

import (
	"context"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
)

// The cost of delivery tracking (bus.WithTracking): the same run with
// tracking off and on, in memory and over NATS. On, every event costs a
// queued record at publish and a running and a done record for its handler:
// map updates in memory, KV puts over NATS (made by the bus's writers, off
// the handler's path). The clock runs until the bus is closed, which waits
// for the writes still queued: their cost is in the numbers.

var trackModes = []busMode{
	{"off", func(*testing.B) []bus.Option { return nil }},
	{"on", func(*testing.B) []bus.Option { return []bus.Option{bus.WithTracking(time.Hour)} }},
}

// runTracked publishes b.N events in batches of e2eBatch, waits until c
// has counted them all, closes hb, then stops the clock.
func runTracked(b *testing.B, hb *bus.Bus, c *counter) {
	_, publishBatch := heraldPublish(hb)
	publishBatches(b, e2eBatch, publishBatch)
	c.wait(b, 5*time.Minute)
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := hb.Close(cctx); err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	reportThroughput(b, b.N, 1)
}

// BenchmarkTrackMemory: one handler on a memory bus (default chain), b.N
// events, tracking off and on.
func BenchmarkTrackMemory(b *testing.B) {
	benchModesMemory(b, "tracking", trackModes, func(b *testing.B, hb *bus.Bus, c *counter) { runTracked(b, hb, c) })
}

// BenchmarkTrackNATS: BenchmarkNATSEndToEnd's Herald run with one handler,
// tracking off and on (the records in the transport's KV bucket).
func BenchmarkTrackNATS(b *testing.B) {
	benchModesNATS(b, "tracking", trackModes, func(b *testing.B, _ *admin, rig *natsRig, c *counter) { runTracked(b, rig.bus, c) })
}
