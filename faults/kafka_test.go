package faults_test

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldbus/herald/adapters/kafka"
	"github.com/heraldbus/herald/adapters/kafka/kafkatest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// netKill is a process's network to the cluster: every connection its
// clients dial, all cut at once by kill, after which dials fail. To the
// cluster, that process has died: it neither commits nor leaves its group.
type netKill struct {
	mu     sync.Mutex
	conns  []net.Conn
	killed bool
}

func (k *netKill) dial(ctx context.Context, network, host string) (net.Conn, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.killed {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.ErrClosed}
	}
	var d net.Dialer
	c, err := d.DialContext(ctx, network, host)
	if err == nil {
		k.conns = append(k.conns, c)
	}
	return c, err
}

func (k *netKill) kill() {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.killed = true
	for _, c := range k.conns {
		_ = c.Close()
	}
}

// kafkaConfig is the suite's Kafka configuration: short nack delays, and a
// short session so that the group notices a dead member within a second.
func kafkaConfig(brokers []string) kafka.Config {
	return kafka.Config{Brokers: brokers, NakDelay: 20 * time.Millisecond, MaxNakDelay: 200 * time.Millisecond,
		SessionTimeout: time.Second, ClientOptions: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond)}}
}

// kafkaBus returns a started bus on a new Kafka transport with cfg, closed
// when t ends.
func kafkaBus(t testing.TB, cfg kafka.Config) *bus.Bus {
	t.Helper()
	cfg.Logger = logger(t)
	tr, err := kafka.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return bustest.New(t, bus.WithTransport(tr), bus.WithDefaultRetry(fastRetry), bus.WithLogger(logger(t)))
}

// Fault 3 on Kafka: a process dies with 100 records delivered to its handler
// and not settled, so not committed. Its network is cut (nothing is
// committed, nacked or left: what the cluster sees when a process is
// killed); once its session expires, a new process with the same handler
// name is given the partition and gets all 100 from the last commit.
func TestKafkaCrashBeforeCommit(t *testing.T) {
	cluster := kafkatest.New(t)
	const n = 100
	const name = "crash.h"

	var net netKill
	dyingCfg := kafkaConfig(cluster.Brokers())
	dyingCfg.RequestTimeout = time.Second // its final commit fails: do not wait long
	dyingCfg.ClientOptions = append(dyingCfg.ClientOptions, kgo.Dialer(net.dial))
	dyingCfg.Logger = logger(t)
	trA, err := kafka.New(dyingCfg)
	if err != nil {
		t.Fatal(err)
	}
	dying, err := bus.New(bus.WithTransport(trA), bus.WithDefaultRetry(fastRetry), bus.WithLogger(logger(t)))
	if err != nil {
		t.Fatal(err)
	}
	// The transport's own close goes on after the bus gave up: its commits
	// and leave fail after RequestTimeout (1s) each. Wait for it.
	entered := startStuck(t, dying, name, n, 10*time.Second, func() { _ = trA.Close() })

	pub := kafkaBus(t, kafkaConfig(cluster.Brokers()))
	publishBatch(t, pub, 0, n)
	bustest.Eventually(t, wait, func() bool { return entered.Load() == n }, "all %d events in the handler (have %d)", n, entered.Load())

	crash := time.Now()
	net.kill()

	c := newTally()
	restarted := kafkaBus(t, kafkaConfig(cluster.Brokers()))
	if _, err := bus.Subscribe(restarted, name, c.handler(nil)); err != nil {
		t.Fatal(err)
	}
	c.waitDistinct(t, n, wait, "the new process got every uncommitted event")
	recovered := time.Since(crash)
	c.check(t, n, name)
	f := figures{fault: "3-crash-before-commit", transport: "kafka (kfake)", handlers: 1, sent: n, delivered: c.distinct(),
		dups: c.duplicates(), poisoned: len(poisonList(t, restarted, "")), recover: recovered}
	f.add("uncommitted_at_crash", n)
	f.add("session_timeout", dyingCfg.SessionTimeout)
	f.log(t)
	if f.poisoned != 0 {
		t.Errorf("%d poison records after a crash", f.poisoned)
	}
	if f.dups != 0 {
		t.Errorf("%d duplicates: the dead process handled nothing", f.dups)
	}
}
