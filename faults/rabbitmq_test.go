package faults_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// The RabbitMQ faults run against the machine's broker (RABBITMQ_URL), each
// test on names of its own (rabbitmqtest). The broker restart stops and
// starts the shared broker's application, and restores it when the test ends.

// rabbit is a RabbitMQ broker for one test; each transport it returns is a
// new "process" whose TCP connections the test can cut.
type rabbit struct {
	br  rabbitmqtest.Broker
	cfg func(*rabbitmq.Config)
}

func rabbitBackend(t testing.TB, edit ...func(*rabbitmq.Config)) *rabbit {
	t.Helper()
	return &rabbit{br: rabbitmqtest.New(t), cfg: func(c *rabbitmq.Config) {
		c.NakDelay = 20 * time.Millisecond
		c.MaxNakDelay = 200 * time.Millisecond
		c.ReconnectWait = 50 * time.Millisecond
		c.MaxReconnectWait = 500 * time.Millisecond
		for _, e := range edit {
			e(c)
		}
	}}
}

// transport returns a new transport (process) on the broker and its TCP
// connections, which the test can cut as a crash or a network failure would.
func (r *rabbit) transport(t testing.TB) (*rabbitmq.Transport, *rabbitmqtest.Cable) {
	t.Helper()
	s := &rabbitmqtest.Cable{}
	tr := r.br.Transport(t, r.cfg, func(c *rabbitmq.Config) {
		c.AMQP.Dial = s.Dial
		c.Logger = logger(t)
	})
	return tr, s
}

// bus returns a started bus on a new transport, closed when t ends.
func (r *rabbit) bus(t testing.TB, opts ...bus.Option) (*bus.Bus, *rabbitmqtest.Cable) {
	t.Helper()
	tr, s := r.transport(t)
	return bustest.New(t, append([]bus.Option{bus.WithTransport(tr), bus.WithDefaultRetry(fastRetry), bus.WithLogger(logger(t))}, opts...)...), s
}

// rabbitmqctl runs rabbitmqctl with args, bounded by a minute.
func rabbitmqctl(t testing.TB, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "rabbitmqctl", args...).CombinedOutput(); err != nil {
		t.Fatalf("rabbitmqctl %v: %v: %s", args, err, out)
	}
}

// Fault 1 on RabbitMQ: the broker's application is stopped and started again
// (rabbitmqctl stop_app, start_app: every connection is closed, quorum queues
// recover from disk) after 5k of 10k events, with 3 handlers. Publishes that
// fail during the outage are published again, as an application would.
//
// It stops the broker every other test of the run uses, so it runs only when
// asked, alone: HERALD_RABBITMQ_RESTART=1 (.ci/run runs it in a step of its
// own, after the other tests).
func TestRabbitMQBrokerRestart(t *testing.T) {
	if os.Getenv("HERALD_RABBITMQ_RESTART") != "1" {
		t.Skip("restarts the shared RabbitMQ broker: run alone with HERALD_RABBITMQ_RESTART=1 (as .ci/run does)")
	}
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is not on the PATH: cannot restart the broker")
	}
	r := rabbitBackend(t)
	b, _ := r.bus(t)
	stopped := false
	t.Cleanup(func() {
		if stopped {
			rabbitmqctl(t, "start_app")
		}
	})
	restartDuring(t, b, "1-broker-restart", "broker", func() {
		stopped = true
		rabbitmqctl(t, "stop_app")
		rabbitmqctl(t, "start_app")
		stopped = false
	}, func(f *figures) { f.transport = "rabbitmq" })
}

// Fault 3 on RabbitMQ: a process dies with 100 events delivered to its
// handler and not acknowledged: its TCP connection is cut and it never
// reconnects. The broker requeues them at once; a new process with the same
// handler name gets all 100.
func TestRabbitMQCrashBeforeAck(t *testing.T) {
	r := rabbitBackend(t, func(c *rabbitmq.Config) { c.Prefetch = 1 })
	trA, sock := r.transport(t)
	dying, err := bus.New(bus.WithTransport(trA), bus.WithLogger(logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	newBus := func() *bus.Bus {
		b, _ := r.bus(t)
		return b
	}
	crashBeforeAck(t, dying, newBus, nil, func() { sock.Cut(true) }, nil, func(f *figures) { f.transport = "rabbitmq" })
}

// Fault 3b on RabbitMQ: a live process's connection is cut (a network
// failure) while its handlers hold unacknowledged deliveries; the transport
// reconnects by itself and the same process goes on. The broker requeued the
// unacknowledged events, so every one is handled; acks given to deliveries
// of the lost connection are dropped, and acks sent just before the cut may
// not have been applied, so some are handled twice (at least once).
func TestRabbitMQConnectionDropped(t *testing.T) {
	r := rabbitBackend(t)
	const n, nh, workers = 2000, 2, 4
	b, sock := r.bus(t)
	gate := make(chan struct{})
	var held atomic.Int64 // handler calls waiting at the gate
	tallies := make([]*tally, nh)
	for i := range tallies {
		tallies[i] = subscribeTally(t, b, fmt.Sprintf("drop.h%d", i), func(ctx context.Context, e Event, call int) error {
			if e.Seq >= n/2 {
				held.Add(1)
				defer held.Add(-1)
				<-gate // the second half waits, unacknowledged, for the cut
			}
			return nil
		}, bus.WithConcurrency(workers))
	}
	pubBus, _ := r.bus(t)
	publishBatch(t, pubBus, 0, n)
	for i, c := range tallies {
		c.waitDistinct(t, n/2, wait, fmt.Sprintf("handler %d has the first half", i))
	}
	bustest.Eventually(t, wait, func() bool { return held.Load() == nh*workers }, "every worker holds an event (have %d)", held.Load())
	cut := time.Now()
	sock.Cut(false)
	close(gate) // their acks are for the lost connection: dropped
	waitEvery(t, tallies, n, wait)
	f := figures{fault: "3b-connection-dropped", transport: "rabbitmq", handlers: nh, sent: n, recover: time.Since(cut)}
	f.count(tallies...)
	f.poisoned = len(poisonList(t, b, ""))
	f.add("in_handlers_at_cut", nh*workers)
	f.log(t)
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a dropped connection", f.poisoned)
	}
}
