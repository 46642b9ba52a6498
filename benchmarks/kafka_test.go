package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	heraldkafka "github.com/heraldbus/herald/adapters/kafka"
	"github.com/heraldbus/herald/adapters/kafka/kafkatest"
	"github.com/heraldbus/herald/bus"
)

// kafkaCluster is a cluster the Kafka benchmarks run against.
type kafkaCluster struct {
	name    string // "kfake" or "machine"
	brokers []string
}

// kafkaClusters starts an in-process kfake cluster (closed when b ends) and
// adds the machine's cluster when KAFKA_BROKERS is set. kfake keeps records
// in memory and replicates nothing: its figures compare Herald with raw
// franz-go in one run, they say nothing of a real cluster's speed.
func kafkaClusters(b *testing.B) []kafkaCluster {
	cs := []kafkaCluster{{"kfake", kafkatest.New(b).Brokers()}}
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		cs = append(cs, kafkaCluster{"machine", strings.Split(env, ",")})
	}
	return cs
}

// kafkaRig is one implementation running against a cluster, with its
// handlers consuming.
type kafkaRig struct {
	// publishBatch publishes events and returns once the broker has acked
	// every one.
	publishBatch func(ctx context.Context, events []BenchEvent) error
}

type kafkaImpl struct {
	name  string
	start func(b *testing.B, brokers []string, handlers int, fn func(BenchEvent)) *kafkaRig
}

var kafkaImpls = []kafkaImpl{
	{"herald", startHeraldKafka},
	{"franz-go", startFranzGo},
}

// startHeraldKafka: a bus over Herald's Kafka transport with default
// settings (topic and group prefixes of its own), a Subscribe per handler.
func startHeraldKafka(b *testing.B, brokers []string, handlers int, fn func(BenchEvent)) *kafkaRig {
	prefix := strings.ToLower(uniqueName("hk")) + "."
	t, err := heraldkafka.New(heraldkafka.Config{Brokers: brokers, TopicPrefix: prefix, GroupPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	hb := heraldBus(b, t)
	subscribeAndStart(b, hb, handlers, fn)
	return &kafkaRig{publishBatch: func(ctx context.Context, es []BenchEvent) error { return bus.PublishBatch(ctx, hb, es) }}
}

// startFranzGo: raw franz-go, as an application would use it without
// Herald: one producer (acks=all, idempotent: kgo's defaults, no linger),
// JSON by hand, and per handler a client in a group of its own that polls,
// decodes and autocommits (kgo's default, every 5s). It has none of
// Herald's retries, poison records, commit-after-handling or metadata.
func startFranzGo(b *testing.B, brokers []string, handlers int, fn func(BenchEvent)) *kafkaRig {
	topic := strings.ToLower(uniqueName("fg"))
	prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ProducerLinger(0), kgo.DefaultProduceTopic(topic))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(prod.Close)
	ctx, cancel := context.WithCancel(context.Background())
	// One partition, as Herald's default.
	if _, err := kadm.NewClient(prod).CreateTopic(ctx, 1, -1, nil, topic); err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan struct{}, handlers)
	b.Cleanup(func() {
		cancel()
		for range handlers {
			<-done
		}
	})
	for i := range handlers {
		cl, err := kgo.NewClient(kgo.SeedBrokers(brokers...), kgo.ConsumerGroup(fmt.Sprintf("%s-h%d", topic, i)),
			kgo.ConsumeTopics(topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
		if err != nil {
			b.Fatal(err)
		}
		go func() {
			defer func() { done <- struct{}{} }()
			defer cl.Close()
			for {
				fs := cl.PollFetches(ctx)
				if ctx.Err() != nil {
					return
				}
				fs.EachRecord(func(r *kgo.Record) {
					var e BenchEvent
					if json.Unmarshal(r.Value, &e) == nil && e.OrderID != "" {
						fn(e)
					}
				})
			}
		}()
	}
	return &kafkaRig{publishBatch: func(ctx context.Context, es []BenchEvent) error {
		recs := make([]*kgo.Record, len(es))
		for i, e := range es {
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			recs[i] = &kgo.Record{Value: v}
		}
		return prod.ProduceSync(ctx, recs...).FirstErr()
	}}
}

// BenchmarkKafkaEndToEnd publishes b.N events in batches of e2eBatch (each
// batch waits for the broker's acks) to 1 and 5 handlers, each a consumer
// group getting every event and decoding it (JSON); the clock stops when
// every handler has handled every event. Herald also commits each event's
// offset after its handler returned; raw franz-go autocommits. ns/op is per
// event, all handlers included. On kfake, an in-process fake cluster: the
// figures compare the two clients in one run, not Kafka's speed.
func BenchmarkKafkaEndToEnd(b *testing.B) {
	for _, cluster := range kafkaClusters(b) {
		for _, impl := range kafkaImpls {
			for _, n := range []int{1, 5} {
				b.Run(fmt.Sprintf("cluster=%s/impl=%s/handlers=%d", cluster.name, impl.name, n), func(b *testing.B) {
					c := newCounter(b.N * n)
					rig := impl.start(b, cluster.brokers, n, func(BenchEvent) { c.hit() })
					batch := make([]BenchEvent, 0, e2eBatch)
					ctx := context.Background()
					b.ReportAllocs()
					b.ResetTimer()
					for i := range b.N {
						batch = append(batch, newEvent(i))
						if len(batch) == cap(batch) || i == b.N-1 {
							if err := rig.publishBatch(ctx, batch); err != nil {
								b.Fatal(err)
							}
							batch = batch[:0]
						}
					}
					c.wait(b, 5*time.Minute)
					b.StopTimer()
					reportThroughput(b, b.N, n)
				})
			}
		}
	}
}
