package benchmarks

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill"
	wmjs "github.com/ThreeDotsLabs/watermill-nats/v2/pkg/jetstream"
	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	heraldnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
)

// natsServer is a server the NATS benchmarks run against.
type natsServer struct {
	name string // "embedded" or "machine"
	url  string
}

// natsServers starts an embedded server (closed when b ends) and adds the
// machine's server when NATS_URL is set.
func natsServers(b *testing.B) []natsServer {
	srv := natstest.New(b)
	servers := []natsServer{{"embedded", srv.URL()}}
	if u := os.Getenv("NATS_URL"); u != "" {
		servers = append(servers, natsServer{"machine", u})
	}
	return servers
}

// Settings shared by the three NATS implementations: Herald's defaults.
const (
	natsAckWait       = 30 * time.Second
	natsMaxAckPending = 1000
	natsDupWindow     = 2 * time.Minute
)

// streamConfig is the events stream of every implementation: Herald's
// defaults (file storage, limits retention with a week's MaxAge, one replica,
// a 2-minute duplicate window, discard old).
func streamConfig(name string, subjects ...string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:       name,
		Subjects:   subjects,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     heraldnats.DefaultMaxAge,
		Storage:    jetstream.FileStorage,
		Replicas:   1,
		Duplicates: natsDupWindow,
		Discard:    jetstream.DiscardOld,
	}
}

// consumerConfig is a handler's durable consumer in every implementation:
// Herald's settings.
func consumerConfig(durable, subject string) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:       durable,
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       natsAckWait,
		MaxDeliver:    -1,
		MaxAckPending: natsMaxAckPending,
		FilterSubject: subject,
	}
}

// admin is a connection of the benchmark's own, outside the implementation
// measured: it creates idle consumers, checks acks and deletes streams.
type admin struct {
	nc *nats.Conn
	js jetstream.JetStream
}

func newAdmin(b *testing.B, url string) *admin {
	nc, js := connectJS(b, url, nats.Name("herald-bench-admin"))
	b.Cleanup(nc.Close)
	return &admin{nc, js}
}

// connectJS connects to url and opens JetStream on the connection, failing b
// (the connection closed) on an error. The caller closes or drains it.
func connectJS(b *testing.B, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		b.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		b.Fatal(err)
	}
	return nc, js
}

// deleteStreams deletes the streams when b ends (after everything registered
// later with b.Cleanup, such as the implementation itself, has stopped).
func (a *admin) deleteStreams(b *testing.B, names ...string) {
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for _, n := range names {
			if err := a.js.DeleteStream(ctx, n); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
				b.Errorf("delete stream %s: %v", n, err)
			}
		}
	})
}

// idleConsumer adds a durable consumer that never pulls (as for a handler
// that is down), so that the stream stores what is published whatever its
// retention.
func (a *admin) idleConsumer(b *testing.B, stream, subject string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := a.js.CreateOrUpdateConsumer(ctx, stream, consumerConfig("idle", subject)); err != nil {
		b.Fatal(err)
	}
}

// waitAcked waits until every consumer of stream has nothing pending and
// nothing unacknowledged: every handler has acked every event.
func (a *admin) waitAcked(b *testing.B, stream string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := a.js.Stream(ctx, stream)
	if err != nil {
		b.Fatal(err)
	}
	for {
		left := 0
		infos := s.ListConsumers(ctx)
		for ci := range infos.Info() {
			left += int(ci.NumPending) + ci.NumAckPending
		}
		if err := infos.Err(); err != nil {
			b.Fatal(err)
		}
		if left == 0 {
			return
		}
		select {
		case <-ctx.Done():
			b.Fatalf("stream %s: %d events still unacked", stream, left)
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// natsRig is one implementation running against a server, with its handlers
// (if any) consuming.
type natsRig struct {
	stream string
	bus    *bus.Bus // Herald's rig only
	// publish publishes e and returns once the stream has stored it (PubAck).
	publish func(ctx context.Context, e BenchEvent) error
	// publishBatch publishes events, pipelined as the implementation allows,
	// and returns once the stream has stored every one.
	publishBatch func(ctx context.Context, events []BenchEvent) error
	// publishAsync sends e without waiting for its PubAck (nil when the
	// implementation has no such call); asyncErr reports any failure since.
	publishAsync func(ctx context.Context, e BenchEvent) error
	asyncErr     func() error
}

// natsImpl starts an implementation with handlers handlers (durable
// consumers, one per handler, each getting every event) that call fn with
// every event they decode, then ack it. With handlers == 0 an idle consumer
// makes the stream store the events. Everything it starts is stopped, and
// its streams deleted, when b ends.
type natsImpl = impl[*admin, *natsRig]

var natsImpls = []natsImpl{
	{"herald", startHeraldNATS},
	{"watermill-nats", startWatermillNATS},
	{"jetstream", startJetStream},
}

// startHeraldNATS: a bus over Herald's NATS transport with default settings
// (but a stream name and subject prefix of its own), a Subscribe per handler.
func startHeraldNATS(b *testing.B, a *admin, url string, handlers int, fn func(BenchEvent)) *natsRig {
	return startHeraldNATSWith(b, a, url, handlers, fn)
}

// startHeraldNATSWith is startHeraldNATS with bus options added.
func startHeraldNATSWith(b *testing.B, a *admin, url string, handlers int, fn func(BenchEvent), opts ...bus.Option) *natsRig {
	stream := uniqueName("HB")
	prefix := strings.ToLower(stream)
	a.deleteStreams(b, stream, stream+"_POISON", "KV_"+stream+"_TRACK") // the last: the tracking bucket, if any
	t, err := heraldnats.New(heraldnats.Config{URL: url, StreamName: stream, SubjectPrefix: prefix})
	if err != nil {
		b.Fatal(err)
	}
	var asyncErr firstError
	hb := heraldBus(b, t, append([]bus.Option{bus.WithAsyncErrorHandler(func(_ string, err error) { asyncErr.set(err) })}, opts...)...)
	subscribeAndStart(b, hb, handlers, fn)
	if handlers == 0 {
		a.idleConsumer(b, stream, t.Subject("benchmarks.BenchEvent"))
	}
	rig := &natsRig{
		stream: stream,
		bus:    hb,
		publishAsync: func(ctx context.Context, e BenchEvent) error {
			_, err := bus.PublishAsync(ctx, hb, e)
			return err
		},
		asyncErr: asyncErr.get,
	}
	rig.publish, rig.publishBatch = heraldPublish(hb)
	return rig
}

// startWatermillNATS: raw watermill-nats/v2 pkg/jetstream (no router, no
// cqrs): a Publisher, and a Subscriber per handler on a durable consumer with
// the same settings, AckAsync, no logger. Its publisher waits for each
// PubAck before the next message (it has no pipelined publish); each
// Subscriber has its own connection, as its Close drains the connection.
func startWatermillNATS(b *testing.B, a *admin, url string, handlers int, fn func(BenchEvent)) *natsRig {
	stream := uniqueName("WM")
	a.deleteStreams(b, stream)
	scfg := streamConfig(stream, stream) // pkg/jetstream publishes on the stream's name
	if _, err := a.js.CreateStream(context.Background(), scfg); err != nil {
		b.Fatal(err)
	}
	logger := watermill.NopLogger{}
	configureStream := func(string) jetstream.StreamConfig { return scfg }
	pub, err := wmjs.NewPublisher(wmjs.PublisherConfig{URL: url, Logger: logger, ConfigureStream: configureStream})
	if err != nil {
		b.Fatal(err)
	}
	subscribeWatermill(b, pub, stream, handlers, func(i int) (message.Subscriber, error) {
		durable := fmt.Sprintf("h%d", i)
		return wmjs.NewSubscriber(wmjs.SubscriberConfig{
			URL:             url,
			Logger:          logger,
			AckAsync:        true,
			ConfigureStream: configureStream,
			ResourceInitializer: func(ctx context.Context, js jetstream.JetStream, topic string) (jetstream.Consumer, func(context.Context, watermill.LoggerAdapter), error) {
				c, err := js.CreateOrUpdateConsumer(ctx, stream, consumerConfig(durable, stream))
				return c, nil, err
			},
		})
	}, fn)
	if handlers == 0 {
		a.idleConsumer(b, stream, stream)
	}
	rig := &natsRig{stream: stream}
	rig.publish, rig.publishBatch = watermillPublish(pub, stream)
	return rig
}

// startJetStream: raw nats.go jetstream on one connection, the floor:
// PublishMsgAsync (with a Nats-Msg-Id, as Herald sends) and a pull consumer
// per handler consumed with Consume, acked with Ack (no wait for the
// server's confirmation).
func startJetStream(b *testing.B, a *admin, url string, handlers int, fn func(BenchEvent)) *natsRig {
	ctx := context.Background()
	stream := uniqueName("JS")
	subject := strings.ToLower(stream) + ".benchmarks.BenchEvent"
	a.deleteStreams(b, stream)
	if _, err := a.js.CreateStream(ctx, streamConfig(stream, strings.ToLower(stream)+".>")); err != nil {
		b.Fatal(err)
	}
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	var asyncErr firstError
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, _ *nats.Msg, err error) { asyncErr.set(err) }))
	if err != nil {
		nc.Close()
		b.Fatal(err)
	}
	var ccs []jetstream.ConsumeContext
	b.Cleanup(func() {
		for _, cc := range ccs {
			cc.Stop()
			<-cc.Closed()
		}
		if err := nc.Drain(); err != nil {
			b.Error(err)
		}
		for nc.IsDraining() {
			time.Sleep(time.Millisecond)
		}
		nc.Close()
	})
	for i := range handlers {
		cons, err := js.CreateOrUpdateConsumer(ctx, stream, consumerConfig(fmt.Sprintf("h%d", i), subject))
		if err != nil {
			b.Fatal(err)
		}
		cc, err := cons.Consume(func(m jetstream.Msg) {
			handleJSON(b, m.Data(), fn)
			_ = m.Ack()
		})
		if err != nil {
			b.Fatal(err)
		}
		ccs = append(ccs, cc)
	}
	if handlers == 0 {
		a.idleConsumer(b, stream, subject)
	}
	toMsg := func(e BenchEvent) (*nats.Msg, error) {
		payload, err := json.Marshal(e)
		if err != nil {
			return nil, err
		}
		return &nats.Msg{Subject: subject, Data: payload, Header: nats.Header{jetstream.MsgIDHeader: []string{nuid.Next()}}}, nil
	}
	return &natsRig{
		stream: stream,
		publish: func(ctx context.Context, e BenchEvent) error {
			m, err := toMsg(e)
			if err != nil {
				return err
			}
			_, err = js.PublishMsg(ctx, m)
			return err
		},
		publishBatch: func(ctx context.Context, es []BenchEvent) error {
			futures := make([]jetstream.PubAckFuture, len(es))
			for i, e := range es {
				m, err := toMsg(e)
				if err != nil {
					return err
				}
				if futures[i], err = js.PublishMsgAsync(m); err != nil {
					return err
				}
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		},
		publishAsync: func(_ context.Context, e BenchEvent) error {
			m, err := toMsg(e)
			if err != nil {
				return err
			}
			_, err = js.PublishMsgAsync(m)
			return err
		},
		asyncErr: asyncErr.get,
	}
}
