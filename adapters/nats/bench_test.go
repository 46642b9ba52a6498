package nats_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjetstream "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/internal/event"
)

// Throughput over an embedded nats-server (file storage), side by side in one
// run: Herald through the bus API, and raw nats.go jetstream doing the same
// work (async publish, pull consume, ack each) as the baseline. One op is one
// event published and handled by every handler.
//
//	go test -run '^$' -bench . -benchmem ./adapters/nats/

type BenchEvent struct {
	N int `json:"n"`
}

func (BenchEvent) EventName() string { return "bench.Event" }

// publishers is how many goroutines publish at once in the parallel cases.
const publishers = 64

func benchServer(b *testing.B) string {
	srv, err := natstest.Start()
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(srv.Close)
	return srv.URL()
}

// waitCount waits until c reaches n.
func waitCount(b *testing.B, c *atomic.Int64, n int64) {
	deadline := time.Now().Add(2 * time.Minute)
	for c.Load() < n {
		if time.Now().After(deadline) {
			b.Fatalf("handled %d of %d", c.Load(), n)
		}
		time.Sleep(200 * time.Microsecond) // polling: the count decides
	}
}

func BenchmarkPublishConsume(b *testing.B) {
	for _, handlers := range []int{1, 5} {
		for _, mode := range []string{"parallel", "batch"} {
			b.Run(fmt.Sprintf("herald/handlers=%d/publish=%s", handlers, mode), func(b *testing.B) {
				benchHerald(b, handlers, mode)
			})
		}
		b.Run(fmt.Sprintf("raw-jetstream/handlers=%d", handlers), func(b *testing.B) {
			benchRaw(b, handlers, false)
		})
		b.Run(fmt.Sprintf("raw-jetstream+headers/handlers=%d", handlers), func(b *testing.B) {
			benchRaw(b, handlers, true)
		})
	}
}

func benchHerald(b *testing.B, handlers int, mode string) {
	tr, err := nats.New(nats.Config{URL: benchServer(b)})
	if err != nil {
		b.Fatal(err)
	}
	bb, err := bus.New(bus.WithTransport(tr))
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	for i := range handlers {
		if _, err := bus.Subscribe(bb, "bench.h"+strconv.Itoa(i), func(context.Context, BenchEvent) error {
			handled.Add(1)
			return nil
		}); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	if err := bb.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = bb.Close(ctx) })
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	switch mode {
	case "parallel":
		var next atomic.Int64
		var wg sync.WaitGroup
		for range publishers {
			wg.Go(func() {
				for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
					if err := bus.Publish(ctx, bb, BenchEvent{N: int(n)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	case "batch":
		const size = 256
		evs := make([]BenchEvent, 0, size)
		for i := range b.N {
			evs = append(evs, BenchEvent{N: i})
			if len(evs) == size || i == b.N-1 {
				if err := bus.PublishBatch(ctx, bb, evs); err != nil {
					b.Fatal(err)
				}
				evs = evs[:0]
			}
		}
	}
	waitCount(b, &handled, int64(b.N*handlers))
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// benchRaw is the baseline; with headers, each message carries what Herald
// sends: a Nats-Msg-Id (dedup) and the Herald-* headers.
func benchRaw(b *testing.B, nHandlers int, headers bool) {
	nc, err := natsgo.Connect(benchServer(b))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx := context.Background()
	s, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAW", Subjects: []string{"raw.>"}, Retention: jetstream.InterestPolicy})
	if err != nil {
		b.Fatal(err)
	}
	var handled atomic.Int64
	for i := range nHandlers {
		c, err := s.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable: "h" + strconv.Itoa(i), AckPolicy: jetstream.AckExplicitPolicy, FilterSubject: "raw.event",
		})
		if err != nil {
			b.Fatal(err)
		}
		cc, err := c.Consume(func(m jetstream.Msg) {
			_ = m.Ack()
			handled.Add(1)
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(cc.Stop)
	}
	payload := []byte(`{"n":1}`)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		m := &natsgo.Msg{Subject: "raw.event", Data: payload}
		if headers {
			id := event.NewID()
			m.Header = natsgo.Header{
				"Nats-Msg-Id": {id}, "Herald-Id": {id}, "Herald-Event": {"bench.Event"}, "Herald-Correlation-Id": {id},
				"Herald-Published-At": {time.Now().UTC().Format(time.RFC3339Nano)}, "Content-Type": {"application/json"},
			}
		}
		if _, err := js.PublishMsgAsync(m, jetstream.WithStallWait(time.Minute)); err != nil {
			b.Fatal(err)
		}
	}
	<-js.PublishAsyncComplete()
	waitCount(b, &handled, int64(b.N*nHandlers))
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
}

// BenchmarkPublish measures publishing alone (until every PubAck): Herald,
// raw nats.go, and watermill-nats's JetStream publisher, which publishes the
// messages of one Publish call one after the other.
func BenchmarkPublish(b *testing.B) {
	b.Run("herald/parallel", func(b *testing.B) {
		tr, err := nats.New(nats.Config{URL: benchServer(b)})
		if err != nil {
			b.Fatal(err)
		}
		pub := tr.Publisher()
		ctx := context.Background()
		if err := tr.Start(ctx); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = tr.Close() })
		b.ReportAllocs()
		b.ResetTimer()
		var next atomic.Int64
		var wg sync.WaitGroup
		for range publishers {
			wg.Go(func() {
				for n := next.Add(1); n <= int64(b.N); n = next.Add(1) {
					if err := pub.Publish("bench.pub", message.NewMessage(event.NewID(), []byte(`{"n":1}`))); err != nil {
						b.Error(err)
						return
					}
				}
			})
		}
		wg.Wait()
	})
	for _, name := range []string{"herald/batch", "watermill-nats/batch"} {
		b.Run(name, func(b *testing.B) {
			url := benchServer(b)
			nc, err := natsgo.Connect(url)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(nc.Close)
			var publish func(msgs []*message.Message) error
			if name == "herald/batch" {
				tr, err := nats.New(nats.Config{Conn: nc})
				if err != nil {
					b.Fatal(err)
				}
				if err := tr.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { _ = tr.Close() })
				publish = func(msgs []*message.Message) error { return tr.Publisher().Publish("bench.pub", msgs...) }
			} else {
				js, _ := jetstream.New(nc)
				if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{Name: "benchwm", Subjects: []string{"benchwm"}}); err != nil {
					b.Fatal(err)
				}
				p, err := wmjetstream.NewPublisher(wmjetstream.PublisherConfig{Conn: nc, Logger: watermill.NopLogger{}})
				if err != nil {
					b.Fatal(err)
				}
				publish = func(msgs []*message.Message) error { return p.Publish("benchwm", msgs...) }
			}
			b.ReportAllocs()
			b.ResetTimer()
			const size = 256
			msgs := make([]*message.Message, 0, size)
			for i := range b.N {
				msgs = append(msgs, message.NewMessage(event.NewID(), []byte(`{"n":1}`)))
				if len(msgs) == size || i == b.N-1 {
					if err := publish(msgs); err != nil {
						b.Fatal(err)
					}
					msgs = msgs[:0]
				}
			}
		})
	}
}
