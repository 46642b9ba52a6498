package nats_test

import (
	"os"
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// broker is where a test's transports connect: a URL and, on a shared server,
// a stream and prefix of the test's own.
type broker struct {
	url    string
	stream string
	prefix string
}

// config returns a Config on b, changed by edit.
func (b broker) config(edit ...func(*nats.Config)) nats.Config {
	return adaptertest.Edited(nats.Config{URL: b.url, StreamName: b.stream, SubjectPrefix: b.prefix}, edit...)
}

// transport returns a new transport on b; it is closed when t ends (a bus
// that owns it may close it first: Close is idempotent).
func (b broker) transport(t testing.TB, edit ...func(*nats.Config)) *nats.Transport {
	t.Helper()
	return adaptertest.Open(t, nats.New, b.config(edit...))
}

// connect returns a plain nats.go connection to url, closed when t ends.
func connect(t testing.TB, url string) *natsgo.Conn {
	t.Helper()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// publishForeign publishes an OrderPlaced on tr's subject for it as a
// service without Herald would: with plain JetStream, on a connection of its
// own to b, with the payload data and the headers h (nil: none).
func publishForeign(t *testing.T, b broker, tr *nats.Transport, data string, h natsgo.Header) {
	t.Helper()
	js, err := jetstream.New(connect(t, b.url))
	if err != nil {
		t.Fatal(err)
	}
	msg := natsgo.NewMsg(tr.Subject(OrderPlaced{}.EventName()))
	msg.Data = []byte(data)
	msg.Header = h
	if _, err := js.PublishMsg(testCtx(t), msg); err != nil {
		t.Fatal(err)
	}
}

// brokers returns the brokers a test runs on: a new embedded server, and the
// server at NATS_URL when it is set.
func brokers(t *testing.T) map[string]func(t *testing.T) broker {
	m := map[string]func(t *testing.T) broker{
		"embedded": func(t *testing.T) broker {
			return broker{url: natstest.New(t).URL()}
		},
	}
	if url := os.Getenv("NATS_URL"); url != "" {
		m["NATS_URL"] = func(t *testing.T) broker {
			m := natstest.NewMachine(t, "heraldtest")
			return broker{url: m.URL, stream: m.StreamName, prefix: m.SubjectPrefix}
		}
	}
	return m
}

func TestConformance(t *testing.T) {
	adaptertest.RunOn(t, brokers(t), func(t *testing.T, b broker) transport.Transport { return b.transport(t) }, adaptertest.Durable(), adaptertest.KeyedReplicas())
}
