package kafka_test

import (
	"os"
	"strings"
	"testing"
	"time"

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
	return adaptertest.Edited(c, edit...)
}

// transport returns a new transport on b; it is closed when t ends (a bus
// that owns it may close it first: Close is idempotent).
func (b broker) transport(t testing.TB, edit ...func(*kafka.Config)) *kafka.Transport {
	t.Helper()
	return adaptertest.Open(t, kafka.New, b.config(edit...))
}

// brokers returns the clusters a test runs on: a new kfake cluster, and the
// cluster at KAFKA_BROKERS (comma separated) when it is set.
func brokers(t *testing.T) map[string]func(t *testing.T) broker {
	m := map[string]func(t *testing.T) broker{
		"kfake": func(t *testing.T) broker { return broker{brokers: kafkatest.New(t).Brokers()} },
	}
	if env := os.Getenv("KAFKA_BROKERS"); env != "" {
		m["KAFKA_BROKERS"] = func(t *testing.T) broker {
			seeds := strings.Split(env, ",")
			return broker{brokers: seeds, prefix: kafkatest.Shared(t, seeds)}
		}
	}
	return m
}

func TestConformance(t *testing.T) {
	adaptertest.RunOn(t, brokers(t), func(t *testing.T, b broker) transport.Transport { return b.transport(t) }, adaptertest.Durable())
}
