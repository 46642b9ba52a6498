// Package rabbitmqtest gives tests a RabbitMQ broker and names of their own on
// it: the broker at RABBITMQ_URL, a prefix per test (so that runs and tests
// sharing one vhost never see each other's queues), and a sweep that deletes
// what a test package declared.
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(rabbitmqtest.Swept(m)) }
//
//	func TestX(t *testing.T) {
//		br := rabbitmqtest.New(t) // fails under CI=true without RABBITMQ_URL, skips otherwise
//		tr, err := rabbitmq.New(br.Config())
//		...
//	}
package rabbitmqtest

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/internal/testenv"
)

// EnvURL is the variable that names the broker of the tests.
const EnvURL = "RABBITMQ_URL"

// runPrefix starts every prefix of this process: unique per run.
var runPrefix = func() string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "heraldtest." + hex.EncodeToString(b[:])
}()

var seq atomic.Int64

// Broker is a broker for one test: its URL and a prefix of the test's own.
type Broker struct {
	URL    string
	Prefix string
}

// URL returns RABBITMQ_URL. Without it, t fails when CI=true (CI must run
// these tests) and is skipped otherwise, with a message that says so.
func URL(t testing.TB) string {
	t.Helper()
	return testenv.Getenv(t, EnvURL, EnvURL+" is not set: these tests need a RabbitMQ broker (e.g. RABBITMQ_URL=amqp://guest:guest@127.0.0.1:5672/)")
}

// New returns the broker at RABBITMQ_URL (see URL) with a new prefix.
func New(t testing.TB) Broker {
	t.Helper()
	return Broker{URL: URL(t), Prefix: fmt.Sprintf("%s.%d", runPrefix, seq.Add(1))}
}

// Config returns a transport Config on b, changed by edit.
func (b Broker) Config(edit ...func(*rabbitmq.Config)) rabbitmq.Config {
	return adaptertest.Edited(rabbitmq.Config{URL: b.URL, Prefix: b.Prefix}, edit...)
}

// Transport returns a new transport on b, closed when t ends (a bus that owns
// it may close it first).
func (b Broker) Transport(t testing.TB, edit ...func(*rabbitmq.Config)) *rabbitmq.Transport {
	t.Helper()
	open := func(c rabbitmq.Config) (*rabbitmq.Transport, error) { return rabbitmq.New(c) }
	return adaptertest.Open(t, open, b.Config(edit...))
}

// TestingM is what goleak.VerifyTestMain takes: *testing.M.
type TestingM interface{ Run() int }

type swept struct{ m TestingM }

// Swept wraps m so that, after the tests ran, every queue and exchange whose
// name starts with this run's prefix is deleted from the broker at
// RABBITMQ_URL. Listing them needs rabbitmqctl on the PATH (the broker has no
// listing in AMQP); without it, or without RABBITMQ_URL, nothing is deleted.
func Swept(m TestingM) TestingM { return swept{m} }

func (s swept) Run() int {
	code := s.m.Run()
	if url := os.Getenv(EnvURL); url != "" {
		if err := Sweep(url, runPrefix); err != nil {
			fmt.Fprintln(os.Stderr, "rabbitmqtest: sweep:", err)
		}
	}
	return code
}

// Sweep deletes the queues and exchanges of the broker at url whose names
// start with prefix, listed with rabbitmqctl.
func Sweep(url, prefix string) error {
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		return nil
	}
	uri, err := amqp.ParseURI(url)
	if err != nil {
		return err
	}
	vhost := uri.Vhost
	if vhost == "" {
		vhost = "/"
	}
	list := func(what string) ([]string, error) {
		out, err := exec.Command("rabbitmqctl", "-q", "-p", vhost, what, "-s", "name").Output()
		if err != nil {
			return nil, fmt.Errorf("rabbitmqctl %s: %w", what, err)
		}
		var names []string
		for n := range strings.Lines(string(out)) {
			if n = strings.TrimSpace(n); strings.HasPrefix(n, prefix) {
				names = append(names, n)
			}
		}
		return names, nil
	}
	queues, err := list("list_queues")
	if err != nil {
		return err
	}
	exchanges, err := list("list_exchanges")
	if err != nil {
		return err
	}
	conn, err := amqp.DialConfig(url, amqp.Config{Dial: amqp.DefaultDial(5 * time.Second)})
	if err != nil {
		return err
	}
	defer func() { _ = conn.Close() }()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	for _, q := range queues {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			return fmt.Errorf("delete queue %s: %w", q, err)
		}
	}
	for _, x := range exchanges {
		if err := ch.ExchangeDelete(x, false, false); err != nil {
			return fmt.Errorf("delete exchange %s: %w", x, err)
		}
	}
	return nil
}
