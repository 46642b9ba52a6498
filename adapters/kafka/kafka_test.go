package kafka_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/kafka"
	"github.com/heraldbus/herald/adapters/kafka/kafkatest"
	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker is where a test's transports connect: seed brokers and, on a shared
// cluster, topic and group prefixes of the test's own.
type broker struct {
	brokers []string
	prefix  string
}

// config returns a Config on b with the suite's short delays, changed by
// edit.
func (b broker) config(edit ...func(*kafka.Config)) kafka.Config {
	c := kafka.Config{Brokers: b.brokers, NakDelay: 20 * time.Millisecond, MaxNakDelay: 200 * time.Millisecond,
		SessionTimeout: 6 * time.Second}
	if b.prefix != "" {
		c.TopicPrefix, c.GroupPrefix = b.prefix, b.prefix
	}
	for _, e := range edit {
		e(&c)
	}
	return c
}

// transport returns a new transport on b; it is closed when t ends (a bus
// that owns it may close it first: Close is idempotent).
func (b broker) transport(t testing.TB, edit ...func(*kafka.Config)) *kafka.Transport {
	t.Helper()
	tr, err := kafka.New(b.config(edit...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// brokers returns the clusters a test runs on: a new kfake cluster, and the
// cluster at KAFKA_BROKERS (comma separated) when it is set.
func brokers(t *testing.T) map[string]func(t *testing.T) broker {
	m := map[string]func(t *testing.T) broker{
		"kfake": func(t *testing.T) broker { return broker{brokers: kafkatest.New(t).Brokers()} },
	}
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		m["KAFKA_BROKERS"] = func(t *testing.T) broker { return shared(t, strings.Split(env, ",")) }
	}
	return m
}

// shared returns a broker on the cluster at seeds with prefixes unique to t;
// its topics are deleted when t ends. The cluster must answer: a test run
// that names one fails without it.
func shared(t *testing.T, seeds []string) broker {
	t.Helper()
	var r [6]byte
	_, _ = rand.Read(r[:])
	b := broker{brokers: seeds, prefix: "heraldtest." + hex.EncodeToString(r[:]) + "."}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatalf("KAFKA_BROKERS=%v: %v", seeds, err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("KAFKA_BROKERS=%v is set but does not answer: %v", seeds, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		adm := kadm.NewClient(cl)
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		var mine []string
		for _, name := range topics.Names() {
			if strings.HasPrefix(name, b.prefix) {
				mine = append(mine, name)
			}
		}
		if _, err := adm.DeleteTopics(ctx, mine...); err != nil {
			t.Errorf("cleanup: delete topics: %v", err)
		}
	})
	return b
}

func TestConformance(t *testing.T) {
	for name, newBroker := range brokers(t) {
		t.Run(name, func(t *testing.T) {
			adaptertest.Run(t, func(t *testing.T) adaptertest.Backend {
				b := newBroker(t)
				return func(t *testing.T) transport.Transport { return b.transport(t) }
			}, adaptertest.Durable())
		})
	}
}
