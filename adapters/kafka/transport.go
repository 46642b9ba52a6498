package kafka

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

// Transport is a Herald transport over Kafka: give it to the bus with
// bus.WithTransport, which then owns it (its Close closes the transport).
// See the package doc for the layout on the cluster and the delivery rules.
// All methods are safe for concurrent use.
type Transport struct {
	cfg Config
	cl  *kgo.Client // produces events; its admin client manages topics and offsets
	adm *kadm.Client

	topics sync.Map // Kafka topic name -> struct{}: known to exist

	started adapterkit.Prepared

	poison *poisonView

	closeOnce sync.Once
	closed    chan struct{}
	mu        sync.Mutex
	subs      map[*subscriber]struct{}
}

// recordOverhead is what a record adds to its payload, key and headers in a
// batch of one, rounded up.
const recordOverhead = 128

// New returns a transport configured by cfg. It dials nothing yet: the
// cluster is first reached by [Transport.Start] (the bus calls it at bus
// Start) or on first use. Invalid settings give an error wrapping
// [transport.ErrInvalidOption].
func New(cfg Config) (*Transport, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	cl, err := kgo.NewClient(cfg.clientOpts(
		kgo.ProducerLinger(0),
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxMessageBytes+recordOverhead)),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil)),
	)...)
	if err != nil {
		return nil, fmt.Errorf("herald/kafka: %w: %w", transport.ErrInvalidOption, err)
	}
	t := &Transport{cfg: cfg, cl: cl, adm: kadm.NewClient(cl), closed: make(chan struct{}), subs: map[*subscriber]struct{}{}}
	t.poison = newPoisonView(t)
	return t, nil
}

// clientOpts returns the options of a franz-go client of the transport: the
// seed brokers, own, then Config.ClientOptions.
func (c Config) clientOpts(own ...kgo.Opt) []kgo.Opt {
	opts := append([]kgo.Opt{kgo.SeedBrokers(c.Brokers...)}, own...)
	return append(opts, c.ClientOptions...)
}

// Config returns the transport's configuration, with defaults filled in.
func (t *Transport) Config() Config { return t.cfg }

// Client returns the franz-go client the transport produces with. It is the
// transport's: do not close it.
func (t *Transport) Client() *kgo.Client { return t.cl }

// Topic returns the Kafka topic of a Herald topic (an event name, or
// transport.ReplayTopic(handler)).
func (t *Transport) Topic(name string) string { return kafkaTopic(t.cfg.TopicPrefix, name) }

// Group returns the consumer group ID of a handler name.
func (t *Transport) Group(handler string) string { return t.cfg.GroupPrefix + handler }

// PoisonTopic returns the Kafka topic of the poison records.
func (t *Transport) PoisonTopic() string { return t.cfg.TopicPrefix + "_poison" }

func (t *Transport) isClosed() bool { return adapterkit.IsClosed(t.closed) }

// Start reaches the cluster and creates the poison topic if it is missing.
// It honours ctx and does its work once: later calls return nil at once; it
// may be called again after it failed. The bus calls it at bus Start.
func (t *Transport) Start(ctx context.Context) error {
	return t.started.Do(t.closed, func() error {
		ctx, cancel := t.requestCtx(ctx)
		defer cancel()
		if err := t.cl.Ping(ctx); err != nil {
			return fmt.Errorf("herald/kafka: reach %v: %w", t.cfg.Brokers, err)
		}
		return t.ensureTopic(ctx, t.PoisonTopic(), 1, t.poisonTopicConfigs())
	})
}

// requestCtx bounds ctx by RequestTimeout when it has no deadline.
func (t *Transport) requestCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, t.cfg.RequestTimeout)
}

// topicConfigs returns Config.TopicConfigs in kadm's form.
func (t *Transport) topicConfigs() map[string]*string {
	if len(t.cfg.TopicConfigs) == 0 {
		return nil
	}
	m := make(map[string]*string, len(t.cfg.TopicConfigs))
	for k, v := range t.cfg.TopicConfigs {
		m[k] = &v
	}
	return m
}

// ensureTopic creates the Kafka topic kt with partitions (0: Config's) if it
// does not exist yet.
func (t *Transport) ensureTopic(ctx context.Context, kt string, partitions int, configs map[string]*string) error {
	if _, ok := t.topics.Load(kt); ok {
		return nil
	}
	if partitions == 0 {
		partitions = t.cfg.Partitions
	}
	rf := int16(t.cfg.ReplicationFactor)
	if rf == 0 {
		rf = -1
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	_, err := t.adm.CreateTopic(ctx, int32(partitions), rf, configs, kt)
	if err != nil && !errors.Is(err, kerr.TopicAlreadyExists) {
		return fmt.Errorf("herald/kafka: create topic %s: %w", kt, err)
	}
	t.topics.Store(kt, struct{}{})
	return nil
}

// topicExists reports whether the Kafka topic kt exists.
func (t *Transport) topicExists(ctx context.Context, kt string) (bool, error) {
	if _, ok := t.topics.Load(kt); ok {
		return true, nil
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	details, err := t.adm.ListTopics(ctx, kt)
	if err != nil {
		return false, fmt.Errorf("herald/kafka: look up topic %s: %w", kt, err)
	}
	d, ok := details[kt]
	if !ok || errors.Is(d.Err, kerr.UnknownTopicOrPartition) {
		return false, nil
	}
	if d.Err != nil {
		return false, fmt.Errorf("herald/kafka: look up topic %s: %w", kt, d.Err)
	}
	t.topics.Store(kt, struct{}{})
	return true, nil
}

// Publisher returns the transport's publisher. Its Publish(topic, msgs...)
// produces each message to the Kafka topic of topic and returns nil only
// once the broker has acknowledged every one (acks=all, idempotent
// producer):
//
//   - The topic is created, with Config.Partitions, if it does not exist. A
//     replay topic (transport.ReplayTopic(H)) is never created here: it
//     exists once handler H has subscribed, and a publish to one that does
//     not exist fails with an error wrapping [transport.ErrNoHandler].
//   - The record key is the message's ordering key (metadata
//     Herald-Ordering-Key), so one key's events share a partition; every
//     metadata entry is a record header, except
//     [transport.KeyDeliveryCount] and the transport's own
//     (Herald-Kafka-*).
//   - A message larger than Config.MaxMessageBytes gives an error wrapping
//     [transport.ErrTooLarge] before anything is sent; on a closed
//     transport, [transport.ErrClosed].
//   - Messages are produced together; each message's Context bounds its
//     wait (and, without a deadline, ProduceTimeout does). On error, other
//     messages may have been stored.
//
// The publisher's Close does nothing: the transport owns the client.
func (t *Transport) Publisher() message.Publisher { return publisher{t} }

// Close stops every subscriber (each commits what its handlers settled and
// leaves its group: what they did not settle is delivered again, to this
// handler's other processes or the next one), fails the publishes still
// waiting with [transport.ErrClosed], and closes the clients. It is safe to
// call more than once; later calls return nil.
func (t *Transport) Close() error {
	t.closeOnce.Do(func() {
		close(t.closed)
		adapterkit.CloseAll(&t.mu, t.subs)
		t.poison.close()
		t.cl.Close()
	})
	return nil
}
