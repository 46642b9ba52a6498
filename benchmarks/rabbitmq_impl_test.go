package benchmarks

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmamqp "github.com/ThreeDotsLabs/watermill-amqp/v3/pkg/amqp"
	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
	"github.com/heraldbus/herald/bus"
)

// The three RabbitMQ implementations share Herald's topology and settings: a
// durable topic exchange, a durable quorum queue per handler bound with the
// event's name as key, persistent messages, publisher confirms, manual acks
// after the handler, a prefetch of 32 per consumer.

const (
	rabbitPrefetch = 32
	rabbitKey      = "benchmarks.BenchEvent"
)

// rabbitURL returns RABBITMQ_URL: the benchmarks fail without it under
// CI=true and are skipped otherwise.
func rabbitURL(b *testing.B) string { return rabbitmqtest.URL(b) }

// rabbitAdmin is a connection of the benchmark's own: it checks that queues
// are drained and deletes what an implementation declared.
type rabbitAdmin struct {
	conn *amqp.Connection
	ch   *amqp.Channel
}

func newRabbitAdmin(b *testing.B, url string) *rabbitAdmin {
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return &rabbitAdmin{conn, ch}
}

// deleteLater deletes the queues and exchanges when b ends (after everything
// registered later with b.Cleanup, such as the implementation, has stopped).
func (a *rabbitAdmin) deleteLater(b *testing.B, queues, exchanges []string) {
	b.Cleanup(func() {
		for _, q := range queues {
			if _, err := a.ch.QueueDelete(q, false, false, false); err != nil {
				b.Errorf("delete queue %s: %v", q, err)
			}
		}
		for _, x := range exchanges {
			if err := a.ch.ExchangeDelete(x, false, false); err != nil {
				b.Errorf("delete exchange %s: %v", x, err)
			}
		}
	})
}

// waitEmpty waits until the queues hold no message, acknowledged or not.
func (a *rabbitAdmin) waitEmpty(b *testing.B, queues []string) {
	deadline := time.Now().Add(time.Minute)
	for _, q := range queues {
		for {
			info, err := a.ch.QueueDeclarePassive(q, true, false, false, false, nil)
			if err != nil {
				b.Fatal(err)
			}
			if info.Messages == 0 {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("queue %s: %d messages left", q, info.Messages)
			}
			time.Sleep(5 * time.Millisecond) // polling the broker's count
		}
	}
}

// declare declares the exchange and n durable quorum queues bound to it.
func (a *rabbitAdmin) declare(b *testing.B, exchange string, queues []string) {
	if err := a.ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	for _, q := range queues {
		if _, err := a.ch.QueueDeclare(q, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
			b.Fatal(err)
		}
		if err := a.ch.QueueBind(q, rabbitKey, exchange, false, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// rabbitQueues names the queues of the handlers (or, with handlers < 0,
// the -handlers idle queues) of the raw implementations on exchange.
func rabbitQueues(exchange string, handlers int) []string {
	var queues []string
	for i := range max(handlers, -handlers) {
		queues = append(queues, fmt.Sprintf("%s.h%d", exchange, i))
	}
	return queues
}

// rabbitRig is one implementation running against the broker.
type rabbitRig struct {
	queues       []string
	publish      func(ctx context.Context, e BenchEvent) error
	publishBatch func(ctx context.Context, events []BenchEvent) error
}

// rabbitImpl starts an implementation with handlers consumers (one queue
// each, getting every event) that call fn with every event they decode, then
// ack it. With handlers < 0, -handlers queues are bound and nobody consumes.
type rabbitImpl = impl[*rabbitAdmin, *rabbitRig]

var rabbitImpls = []rabbitImpl{
	{"herald", startHeraldRabbit},
	{"watermill-amqp", startWatermillAMQP},
	{"amqp091", startAMQP091},
}

// startHeraldRabbit: a bus over Herald's RabbitMQ transport with default
// settings (but a prefix of its own), a Subscribe per handler.
func startHeraldRabbit(b *testing.B, a *rabbitAdmin, url string, handlers int, fn func(BenchEvent)) *rabbitRig {
	prefix := "heraldbench." + uniqueName("HR")
	t, err := rabbitmq.New(rabbitmq.Config{URL: url, Prefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	names := make([]string, max(handlers, -handlers))
	for i := range names {
		names[i] = fmt.Sprintf("h%d", i)
	}
	var queues []string
	for _, h := range names {
		queues = append(queues, t.QueueName(h, rabbitKey), t.QueueName(h, "_replay."+h))
	}
	a.deleteLater(b, append(queues, prefix+".poison"), []string{prefix + ".events"})
	hb := heraldBus(b, t)
	if handlers > 0 {
		subscribeAndStart(b, hb, handlers, fn)
	} else {
		// Idle handlers: subscribed once (their queues exist), then stopped.
		if err := hb.Start(context.Background()); err != nil {
			b.Fatal(err)
		}
		for _, h := range names {
			sub, err := bus.Subscribe(hb, h, func(context.Context, BenchEvent) error { return nil })
			if err != nil {
				b.Fatal(err)
			}
			if err := sub.Stop(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
	}
	rig := &rabbitRig{queues: queues}
	rig.publish, rig.publishBatch = heraldPublish(hb)
	return rig
}

// startWatermillAMQP: raw watermill-amqp/v3 (no router, no cqrs): its topic
// config with a durable exchange and quorum queues, a Publisher with
// ConfirmDelivery and a pool of 8 channels (its Publish holds one channel
// while it awaits each confirm), and a Subscriber per handler with a prefetch
// of 32.
func startWatermillAMQP(b *testing.B, a *rabbitAdmin, url string, handlers int, fn func(BenchEvent)) *rabbitRig {
	exchange := "heraldbench." + uniqueName("WA")
	config := func(queue string) wmamqp.Config {
		c := wmamqp.NewDurableTopicConfig(url, exchange, queue)
		c.Exchange.Durable = true
		c.Queue.Arguments = amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}
		c.Consume.Qos.PrefetchCount = rabbitPrefetch
		c.Publish.ConfirmDelivery = true
		c.Publish.ChannelPoolSize = 8
		return c
	}
	queues := rabbitQueues(exchange, handlers)
	a.deleteLater(b, queues, []string{exchange})
	if handlers < 0 {
		a.declare(b, exchange, queues)
	}
	logger := watermill.NopLogger{}
	pub, err := wmamqp.NewPublisher(config(""), logger)
	if err != nil {
		b.Fatal(err)
	}
	subscribeWatermill(b, pub, rabbitKey, max(handlers, 0), func(i int) (message.Subscriber, error) {
		return wmamqp.NewSubscriber(config(queues[i]), logger)
	}, fn)
	if handlers > 0 {
		// Subscribe declares its queue in the background: wait for it.
		a.waitDeclared(b, queues)
	}
	rig := &rabbitRig{queues: queues}
	rig.publish, rig.publishBatch = watermillPublish(pub, rabbitKey)
	return rig
}

// waitDeclared waits until every queue exists.
func (a *rabbitAdmin) waitDeclared(b *testing.B, queues []string) {
	deadline := time.Now().Add(30 * time.Second)
	for _, q := range queues {
		for {
			ch, err := a.conn.Channel() // a failed passive declare closes its channel
			if err != nil {
				b.Fatal(err)
			}
			_, err = ch.QueueDeclarePassive(q, true, false, false, false, nil)
			_ = ch.Close()
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("queue %s never declared: %v", q, err)
			}
			time.Sleep(5 * time.Millisecond) // polling the broker
		}
	}
}

// startAMQP091: raw amqp091-go on one connection, the floor: one confirm
// channel on which concurrent publishes are pipelined, each waiting for its
// own deferred confirm, and a channel per handler consumed with Consume and
// acked with Ack.
func startAMQP091(b *testing.B, a *rabbitAdmin, url string, handlers int, fn func(BenchEvent)) *rabbitRig {
	exchange := "heraldbench." + uniqueName("AQ")
	queues := rabbitQueues(exchange, handlers)
	a.deleteLater(b, queues, []string{exchange})
	a.declare(b, exchange, queues)
	conn, err := amqp.Dial(url)
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	b.Cleanup(func() {
		_ = conn.Close() // ends the consumers' delivery channels
		wg.Wait()
	})
	pubCh, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if err := pubCh.Confirm(false); err != nil {
		b.Fatal(err)
	}
	for i := range max(handlers, 0) {
		ch, err := conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		if err := ch.Qos(rabbitPrefetch, 0, false); err != nil {
			b.Fatal(err)
		}
		ds, err := ch.Consume(queues[i], "", false, false, false, false, nil)
		if err != nil {
			b.Fatal(err)
		}
		wg.Go(func() {
			for d := range ds {
				handleJSON(b, d.Body, fn)
				_ = d.Ack(false)
			}
		})
	}
	send := func(ctx context.Context, e BenchEvent) (*amqp.DeferredConfirmation, error) {
		payload, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		return pubCh.PublishWithDeferredConfirmWithContext(ctx, exchange, rabbitKey, false, false,
			amqp.Publishing{DeliveryMode: amqp.Persistent, MessageId: watermill.NewUUID(), Body: payload})
	}
	confirmed := func(ctx context.Context, dc *amqp.DeferredConfirmation) error {
		ok, err := dc.WaitContext(ctx)
		if err == nil && !ok {
			err = fmt.Errorf("publish not confirmed")
		}
		return err
	}
	return &rabbitRig{
		queues: queues,
		publish: func(ctx context.Context, e BenchEvent) error {
			dc, err := send(ctx, e)
			if err != nil {
				return err
			}
			return confirmed(ctx, dc)
		},
		publishBatch: func(ctx context.Context, es []BenchEvent) error {
			dcs := make([]*amqp.DeferredConfirmation, len(es))
			for i, e := range es {
				var err error
				if dcs[i], err = send(ctx, e); err != nil {
					return err
				}
			}
			for _, dc := range dcs {
				if err := confirmed(ctx, dc); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
