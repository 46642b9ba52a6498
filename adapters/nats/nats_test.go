package nats_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

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
	c := nats.Config{URL: b.url, StreamName: b.stream, SubjectPrefix: b.prefix}
	for _, e := range edit {
		e(&c)
	}
	return c
}

// transport returns a new transport on b; it is closed when t ends (a bus
// that owns it may close it first: Close is idempotent).
func (b broker) transport(t testing.TB, edit ...func(*nats.Config)) *nats.Transport {
	t.Helper()
	tr, err := nats.New(b.config(edit...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
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

// brokers returns the brokers a test runs on: a new embedded server, and the
// server at NATS_URL when it is set.
func brokers(t *testing.T) map[string]func(t *testing.T) broker {
	m := map[string]func(t *testing.T) broker{
		"embedded": func(t *testing.T) broker {
			return broker{url: natstest.New(t).URL()}
		},
	}
	if url := os.Getenv("NATS_URL"); url != "" {
		m["NATS_URL"] = func(t *testing.T) broker { return shared(t, url) }
	}
	return m
}

// shared returns a broker on the server at url with a stream and prefix
// unique to t, deleted when t ends.
func shared(t *testing.T, url string) broker {
	t.Helper()
	var r [6]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	b := broker{url: url, stream: "HERALDTEST_" + strings.ToUpper(id), prefix: "heraldtest_" + id}
	t.Cleanup(func() {
		nc, err := natsgo.Connect(url)
		if err != nil {
			t.Errorf("cleanup: %v", err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range []string{b.stream, b.stream + "_POISON", "KV_" + b.stream + "_TRACK"} { // the KV bucket is the stream KV_<bucket>
			if err := js.DeleteStream(ctx, s); err != nil && err != jetstream.ErrStreamNotFound {
				t.Errorf("cleanup: delete stream %s: %v", s, err)
			}
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
