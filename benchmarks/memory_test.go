package benchmarks

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	"github.com/ThreeDotsLabs/watermill/components/cqrs"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/ThreeDotsLabs/watermill/pubsub/gochannel"

	"github.com/heraldbus/herald/bus"
)

// The in-memory implementations. Each starts handlers handlers that call fn
// with every event, and returns its publish function and a stop function that
// stops everything it started.
type memImpl struct {
	name  string
	start func(b *testing.B, handlers int, fn func(BenchEvent)) (publish func(BenchEvent), stop func())
}

// startMem starts impl and stops it when b ends.
func startMem(b *testing.B, impl memImpl, handlers int, fn func(BenchEvent)) func(BenchEvent) {
	publish, stop := impl.start(b, handlers, fn)
	b.Cleanup(stop)
	return publish
}

var memImpls = []memImpl{
	{"herald", startHeraldMemory},
	{"cqrs", startCQRS},
	{"chan", startChan},
}

// startHeraldMemory: bus.New() with no options (memory transport, default
// middleware chain), one Subscribe per handler.
func startHeraldMemory(b *testing.B, handlers int, fn func(BenchEvent)) (func(BenchEvent), func()) {
	ctx := context.Background()
	hb, err := bus.New()
	if err != nil {
		b.Fatal(err)
	}
	subscribeAndStart(b, hb, handlers, fn)
	stop := func() {
		if err := hb.Close(ctx); err != nil {
			b.Error(err)
		}
	}
	return func(e BenchEvent) {
		if err := bus.Publish(ctx, hb, e); err != nil {
			b.Fatal(err)
		}
	}, stop
}

// startCQRS: watermill's cqrs EventBus and EventProcessor on a router, over a
// GoChannel (buffer 1024, as Herald's queues), JSON marshaler, no logs; one
// EventHandler per handler.
func startCQRS(b *testing.B, handlers int, fn func(BenchEvent)) (func(BenchEvent), func()) {
	ctx, cancel := context.WithCancel(context.Background())
	logger := watermill.NopLogger{}
	ps := gochannel.NewGoChannel(gochannel.Config{OutputChannelBuffer: 1024}, logger)
	router, err := message.NewRouter(message.RouterConfig{}, logger)
	if err != nil {
		b.Fatal(err)
	}
	marshaler := cqrs.JSONMarshaler{}
	eb, err := cqrs.NewEventBusWithConfig(ps, cqrs.EventBusConfig{
		GeneratePublishTopic: func(p cqrs.GenerateEventPublishTopicParams) (string, error) { return p.EventName, nil },
		Marshaler:            marshaler,
		Logger:               logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	ep, err := cqrs.NewEventProcessorWithConfig(router, cqrs.EventProcessorConfig{
		GenerateSubscribeTopic: func(p cqrs.EventProcessorGenerateSubscribeTopicParams) (string, error) {
			return p.EventName, nil
		},
		SubscriberConstructor: func(cqrs.EventProcessorSubscriberConstructorParams) (message.Subscriber, error) {
			return ps, nil
		},
		Marshaler: marshaler,
		Logger:    logger,
	})
	if err != nil {
		b.Fatal(err)
	}
	for i := range handlers {
		if err := ep.AddHandlers(cqrs.NewEventHandler(fmt.Sprintf("h%d", i), func(_ context.Context, e *BenchEvent) error {
			fn(*e)
			return nil
		})); err != nil {
			b.Fatal(err)
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = router.Run(ctx)
	}()
	<-router.Running()
	stop := func() {
		_ = router.Close()
		cancel()
		<-done
		_ = ps.Close()
	}
	return func(e BenchEvent) {
		if err := eb.Publish(ctx, &e); err != nil {
			b.Fatal(err)
		}
	}, stop
}

// startChan: one buffered channel (1024) and one goroutine per handler; the
// publisher sends to each channel in turn. No middleware, no copies: the floor.
func startChan(_ *testing.B, handlers int, fn func(BenchEvent)) (func(BenchEvent), func()) {
	chans := make([]chan BenchEvent, handlers)
	done := make(chan struct{}, handlers)
	for i := range chans {
		chans[i] = make(chan BenchEvent, 1024)
		go func(ch chan BenchEvent) {
			defer func() { done <- struct{}{} }()
			for e := range ch {
				fn(e)
			}
		}(chans[i])
	}
	stop := func() {
		for _, ch := range chans {
			close(ch)
		}
		for range chans {
			<-done
		}
	}
	return func(e BenchEvent) {
		for _, ch := range chans {
			ch <- e
		}
	}, stop
}

// BenchmarkMemoryThroughput publishes b.N events, one after the other, to
// 1, 10 and 100 handlers and stops the clock when every handler has handled
// every event. ns/op and allocs/op are per event, all handlers included;
// ns/delivery is ns/op divided by the handler count (one event to one
// handler): flat when the cost grows linearly with handlers.
func BenchmarkMemoryThroughput(b *testing.B) {
	for _, impl := range memImpls {
		for _, n := range []int{1, 10, 100} {
			b.Run(fmt.Sprintf("impl=%s/handlers=%d", impl.name, n), func(b *testing.B) {
				c := newCounter(b.N * n)
				publish := startMem(b, impl, n, func(BenchEvent) { c.hit() })
				e := newEvent(1)
				b.ReportAllocs()
				b.ResetTimer()
				for range b.N {
					publish(e)
				}
				c.wait(b, 5*time.Minute)
				b.StopTimer()
				reportThroughput(b, b.N, n)
			})
		}
	}
}

// pacedRate is the publish rate of BenchmarkMemoryLatency's paced mode:
// modest for all three (cqrs handles about 20k events/s on both cores, less
// with the publisher spinning on one), so the latency is that of a delivery
// rather than of a backlog.
const pacedRate = 5_000 // events/s

// BenchmarkMemoryLatency measures publish → handler latency with one handler:
// the event carries its publish time (in PlacedAt) and the handler records
// time.Since it. It reports p50, p99 and p99.9 in µs, in two modes:
//
//   - mode=single: one event at a time. The publisher stamps the event, calls
//     Publish, and waits for the handler's signal before the next one. Nothing
//     is ever queued, so there is no backlog whose waits could go unrecorded:
//     a stall delays the one event in flight, and its latency includes it.
//     It is the latency of a delivery on an idle bus; ns/op is the round trip.
//   - mode=paced: open loop at pacedRate. Event i is due at start+i/rate and
//     carries that due time, not the time its Publish began, so a publisher
//     held up by a slow delivery publishes late and the delay counts against
//     every event that waited (no coordinated omission). The publisher waits
//     for each due time by yielding (runtime.Gosched), not with a timer, which
//     oversleeps by about a millisecond here. ns/op is 1/rate: ignore it.
//
// Times are wall clock: cqrs's JSON round trip drops the monotonic reading,
// so every implementation uses the wall clock.
func BenchmarkMemoryLatency(b *testing.B) {
	for _, mode := range []string{"single", "paced"} {
		for _, impl := range memImpls {
			b.Run(fmt.Sprintf("mode=%s/impl=%s/handlers=1", mode, impl.name), func(b *testing.B) {
				lat := newLatencies(b.N)
				c := newCounter(b.N)
				handled := make(chan struct{}, 1)
				publish := startMem(b, impl, 1, func(e BenchEvent) {
					lat.add(time.Since(e.PlacedAt))
					c.hit()
					if mode == "single" {
						handled <- struct{}{}
					}
				})
				e := newEvent(1)
				b.ReportAllocs()
				b.ResetTimer()
				if mode == "single" {
					for range b.N {
						e.PlacedAt = time.Now().Round(0)
						publish(e)
						<-handled
					}
				} else {
					interval := time.Second / pacedRate
					start := time.Now().Round(0)
					for i := range b.N {
						due := start.Add(time.Duration(i) * interval)
						spinUntil(due)
						e.PlacedAt = due
						publish(e)
					}
				}
				c.wait(b, time.Minute)
				b.StopTimer()
				lat.report(b)
			})
		}
	}
}

// burstWork is how long the burst handler works on each event: longer than a
// Publish takes, so the publisher outruns the handler.
const burstWork = 2 * time.Microsecond

// BenchmarkMemoryBurst publishes a burst of 100k and of 1M events (1/20 of
// that with -benchtime 1x; skipped with -short) as fast as it can into one
// handler slower than the publisher, sampling the heap in use (HeapInuse,
// runtime/metrics) every millisecond. It reports the peak and its growth over
// the heap before the burst. Herald's queue holds 1024 events and then blocks
// the publisher, so its growth must not follow the burst's size. cqrs over
// GoChannel never blocks the publisher: it keeps goroutines per event and
// handler until the handler takes the event, so its bursts are a tenth (10k
// and 100k) to keep the machine safe, and its growth follows their size.
func BenchmarkMemoryBurst(b *testing.B) {
	if testing.Short() {
		b.Skip("the 1M-event burst takes seconds; skipped with -short")
	}
	// cqrs last: the heap it leaves behind (fragmented spans) would raise the
	// others' peaks, though not their growth.
	for _, impl := range []memImpl{memImpls[0], memImpls[2], memImpls[1]} {
		for _, events := range []int{100_000, 1_000_000} {
			if impl.name == "cqrs" {
				events /= 10
			}
			if quick() {
				events /= 20
			}
			benchBurst(b, impl, events)
		}
	}
}

func benchBurst(b *testing.B, impl memImpl, events int) {
	b.Run(fmt.Sprintf("impl=%s/events=%d", impl.name, events), func(b *testing.B) {
		var peak, growth uint64
		for range b.N {
			b.StopTimer()
			c := newCounter(events)
			publish, stop := impl.start(b, 1, func(BenchEvent) {
				for t := time.Now(); time.Since(t) < burstWork; {
				}
				c.hit()
			})
			runtime.GC()
			base := heapInuse(newHeapSamples())
			hs := startHeapSampler(time.Millisecond)
			e := newEvent(1)
			b.StartTimer()
			for range events {
				publish(e)
			}
			c.wait(b, 5*time.Minute)
			b.StopTimer()
			p := hs.Stop()
			peak, growth = max(peak, p), max(growth, p-min(p, base))
			stop()
		}
		b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
		b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
		b.ReportMetric(float64(growth)/(1<<20), "heap-growth-MiB")
	})
}

// subscribeAndStart subscribes handlers handlers named h0, h1, ... that call
// fn, then starts hb.
func subscribeAndStart(b *testing.B, hb *bus.Bus, handlers int, fn func(BenchEvent)) {
	for i := range handlers {
		if _, err := bus.Subscribe(hb, fmt.Sprintf("h%d", i), func(_ context.Context, e BenchEvent) error {
			fn(e)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	if err := hb.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
}
