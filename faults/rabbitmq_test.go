package faults_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync"
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

// sockets records a transport's TCP connections, so that a test can cut them
// as a crash or a network failure would; once dead, it refuses to dial.
type sockets struct {
	mu    sync.Mutex
	conns []net.Conn
	dead  bool
}

func (s *sockets) dial(network, addr string) (net.Conn, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.dead {
		return nil, fmt.Errorf("process is dead")
	}
	c, err := net.DialTimeout(network, addr, 5*time.Second)
	if err == nil {
		s.conns = append(s.conns, c)
	}
	return c, err
}

// cut closes every connection abruptly; die also refuses later dials.
func (s *sockets) cut(die bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.dead = die
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

// transport returns a new transport (process) on the broker and its sockets.
func (r *rabbit) transport(t testing.TB) (*rabbitmq.Transport, *sockets) {
	t.Helper()
	s := &sockets{}
	tr := r.br.Transport(t, r.cfg, func(c *rabbitmq.Config) {
		c.AMQP.Dial = s.dial
		c.Logger = logger(t)
	})
	return tr, s
}

// bus returns a started bus on a new transport, closed when t ends.
func (r *rabbit) bus(t testing.TB, opts ...bus.Option) (*bus.Bus, *sockets) {
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
	const n, nh = 10000, 3
	fa := newFirstAfter(nh)
	tallies := subscribeTallies(t, b, "restart.h", nh, fa.mark, bus.WithConcurrency(2))
	pub := newPublisher(b, "restart")
	until := time.Now().Add(2 * time.Minute)
	if failed := pub.run(0, n/2, until); len(failed) > 0 {
		t.Fatalf("before the restart, gave up publishing %d events: %v", len(failed), failed[:min(10, len(failed))])
	}
	errsBefore := pub.errs.Load()

	stopped := false
	t.Cleanup(func() {
		if stopped {
			rabbitmqctl(t, "start_app")
		}
	})
	second := make(chan []int, 1)
	go func() { second <- pub.run(n/2, n, until) }()
	down := time.Now()
	stopped = true
	rabbitmqctl(t, "stop_app")
	rabbitmqctl(t, "start_app")
	stopped = false
	up := time.Now()
	fa.since.Store(up.UnixNano())
	if failed := <-second; len(failed) > 0 {
		t.Fatalf("after the restart, gave up publishing %d events: %v (errors: %s)", len(failed), failed[:min(10, len(failed))], pub.errorSummary())
	}
	published := time.Now()
	for i, c := range tallies {
		c.waitDistinct(t, n, 3*wait, fmt.Sprintf("handler %d has every event", i))
		c.check(t, n, fmt.Sprintf("handler %d", i))
	}
	all := time.Now()
	f := figures{fault: "1-broker-restart", transport: "rabbitmq", handlers: nh, sent: len(pub.published())}
	for _, c := range tallies {
		f.delivered += c.distinct()
		f.dups += c.duplicates()
	}
	f.poisoned = len(poisonList(t, b, ""))
	f.recover = fa.latest(down)
	f.add("publish_errors", pub.errs.Load())
	f.add("outage", up.Sub(down))
	f.add("all_delivered_after_restart", all.Sub(down))
	f.add("last_publish_after_restart", published.Sub(down))
	f.log(t)
	t.Logf("publish errors before the restart: %d; during and after: %d: %s", errsBefore, pub.errs.Load()-errsBefore, pub.errorSummary())
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a broker restart, want 0: %+v", f.poisoned, poisonList(t, b, "")[0])
	}
	if f.recover < 0 {
		t.Errorf("no handler succeeded after the restart")
	}
}

// Fault 3 on RabbitMQ: a process dies with 100 events delivered to its
// handler and not acknowledged: its TCP connection is cut and it never
// reconnects. The broker requeues them at once; a new process with the same
// handler name gets all 100.
func TestRabbitMQCrashBeforeAck(t *testing.T) {
	r := rabbitBackend(t, func(c *rabbitmq.Config) { c.Prefetch = 1 })
	const n = 100
	const name = "crash.h"
	trA, sock := r.transport(t)
	dying, err := bus.New(bus.WithTransport(trA), bus.WithLogger(logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	var entered atomic.Int32
	if _, err := bus.Subscribe(dying, name, func(ctx context.Context, e Event) error {
		entered.Add(1)
		<-ctx.Done() // stuck until the process "dies"
		return ctx.Err()
	}, bus.WithConcurrency(n)); err != nil {
		t.Fatal(err)
	}
	if err := dying.Start(ctxFor(t, wait)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = dying.Close(ctx) // its connection is gone: errors are expected
	})
	pub, _ := r.bus(t)
	publishBatch(t, pub, 0, n)
	bustest.Eventually(t, wait, func() bool { return entered.Load() == n }, "all %d events in the handler (have %d)", n, entered.Load())

	crash := time.Now()
	sock.cut(true)
	c := newTally()
	restarted, _ := r.bus(t)
	if _, err := bus.Subscribe(restarted, name, c.handler(nil)); err != nil {
		t.Fatal(err)
	}
	c.waitDistinct(t, n, wait, "the new process got every unacknowledged event")
	recovered := time.Since(crash)
	c.check(t, n, name)
	f := figures{fault: "3-crash-before-ack", transport: "rabbitmq", handlers: 1, sent: n, delivered: c.distinct(),
		dups: c.duplicates(), poisoned: len(poisonList(t, restarted, "")), recover: recovered}
	f.add("unacked_at_crash", entered.Load())
	f.log(t)
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a crash", f.poisoned)
	}
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
	sock.cut(false)
	close(gate) // their acks are for the lost connection: dropped
	for i, c := range tallies {
		c.waitDistinct(t, n, wait, fmt.Sprintf("handler %d has every event", i))
		c.check(t, n, fmt.Sprintf("handler %d", i))
	}
	f := figures{fault: "3b-connection-dropped", transport: "rabbitmq", handlers: nh, sent: n, recover: time.Since(cut)}
	for _, c := range tallies {
		f.delivered += c.distinct()
		f.dups += c.duplicates()
	}
	f.poisoned = len(poisonList(t, b, ""))
	f.add("in_handlers_at_cut", nh*workers)
	f.log(t)
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a dropped connection", f.poisoned)
	}
}
