package benchmarks

import (
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// newEvent returns the benchmark event number i: about 200 bytes as JSON.
func newEvent(i int) BenchEvent {
	return BenchEvent{
		OrderID:    fmt.Sprintf("order-%012d-2026-11-23-eu-west-1", i),
		CustomerID: "customer-0000000000042-acme-industries-gmbh",
		Amount:     129900,
		Currency:   "EUR",
		PlacedAt:   time.Date(2026, 11, 23, 14, 0, 0, 0, time.UTC),
	}
}

// runID makes the names of this process's NATS streams unique, so that runs
// on a shared server never collide.
var runID = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

var nameSeq atomic.Int64

// uniqueName returns prefix followed by the run ID and a sequence number:
// a valid stream name and subject token.
func uniqueName(prefix string) string {
	return fmt.Sprintf("%s_%s_%d", prefix, runID, nameSeq.Add(1))
}

// quick reports whether the run is a smoke run (-short, or -benchtime 1x as
// CI runs it), in which long benchmarks shrink.
func quick() bool {
	if testing.Short() {
		return true
	}
	f := flag.Lookup("test.benchtime")
	return f != nil && f.Value.String() == "1x"
}

// counter closes done when it has been hit target times.
type counter struct {
	n      atomic.Int64
	target int64
	done   chan struct{}
}

func newCounter(target int) *counter {
	c := &counter{target: int64(target), done: make(chan struct{})}
	if target <= 0 {
		close(c.done)
	}
	return c
}

func (c *counter) hit() {
	if c.n.Add(1) == c.target {
		close(c.done)
	}
}

// wait waits until every hit has happened; it fails b after a deadline.
func (c *counter) wait(b *testing.B, d time.Duration) {
	b.Helper()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		b.Fatalf("only %d of %d deliveries after %v", c.n.Load(), c.target, d)
	}
}

// reportThroughput reports events/s and, with handlers > 0, the cost of one
// delivery (one event to one handler) in ns.
func reportThroughput(b *testing.B, events, handlers int) {
	el := b.Elapsed().Seconds()
	b.ReportMetric(float64(events)/el, "events/s")
	if handlers > 0 {
		b.ReportMetric(el*1e9/float64(events*handlers), "ns/delivery")
	}
}

// latencies records one duration per event, from any goroutine.
type latencies struct {
	d []time.Duration
	n atomic.Int64
}

func newLatencies(n int) *latencies { return &latencies{d: make([]time.Duration, n)} }

func (l *latencies) add(d time.Duration) {
	if i := l.n.Add(1) - 1; int(i) < len(l.d) {
		l.d[i] = d
	}
}

// report reports the p50, p99 and p99.9 of the recorded latencies in µs.
func (l *latencies) report(b *testing.B) {
	n := min(int(l.n.Load()), len(l.d))
	if n == 0 {
		return
	}
	d := l.d[:n]
	slices.Sort(d)
	q := func(p float64) float64 {
		i := int(p * float64(n))
		if i >= n {
			i = n - 1
		}
		return float64(d[i]) / 1e3
	}
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
	b.ReportMetric(q(0.999), "p999-µs")
}

// heapSampler samples the heap in use (HeapInuse: spans holding objects, as
// runtime/metrics reports it) every interval and keeps the peak.
type heapSampler struct {
	stop chan struct{}
	wg   sync.WaitGroup
	peak atomic.Uint64
}

var heapMetrics = []string{"/memory/classes/heap/objects:bytes", "/memory/classes/heap/unused:bytes"}

// heapInuse returns HeapInuse in bytes.
func heapInuse(s []metrics.Sample) uint64 {
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		n += v.Value.Uint64()
	}
	return n
}

func newHeapSamples() []metrics.Sample {
	s := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		s[i].Name = name
	}
	return s
}

func startHeapSampler(interval time.Duration) *heapSampler {
	h := &heapSampler{stop: make(chan struct{})}
	s := newHeapSamples()
	h.peak.Store(heapInuse(s))
	h.wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				if v := heapInuse(s); v > h.peak.Load() {
					h.peak.Store(v)
				}
			}
		}
	})
	return h
}

// Stop stops sampling and returns the peak HeapInuse in bytes.
func (h *heapSampler) Stop() uint64 {
	close(h.stop)
	h.wg.Wait()
	if v := heapInuse(newHeapSamples()); v > h.peak.Load() {
		h.peak.Store(v)
	}
	return h.peak.Load()
}

// spinUntil waits until t without sleeping past it: it sleeps while t is far
// away, then yields the processor until t (a timer alone oversleeps by tens
// of µs, more than an in-memory delivery takes).
func spinUntil(t time.Time) {
	for {
		d := time.Until(t)
		switch {
		case d <= 0:
			return
		case d > 300*time.Microsecond:
			time.Sleep(d - 200*time.Microsecond)
		default:
			runtime.Gosched()
		}
	}
}
