package faults_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// Fault 12: in a 3-node JetStream cluster (natstest.Cluster) with an R3
// stream, the stream leader is killed while 2k events are being published to 2 handlers. Every
// event whose Publish returned nil is delivered to both handlers. (The
// publisher retries a failed Publish with the same message ID, so in the end
// every event's Publish returns nil.)
func TestClusterLeaderLoss(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	cfg := natsConfig(c.URL())
	cfg.Replicas = 3
	cfg.Retention = hnats.RetentionLimits
	// Creating R3 consumers goes through the cluster's meta leader: on 2
	// loaded cores under -race it can take longer than the 5s default.
	cfg.RequestTimeout = 30 * time.Second
	newTransport := func() *hnats.Transport { return natsTransport(t, cfg) }
	handlersBus := bustest.New(t, bus.WithTransport(newTransport()), bus.WithDefaultRetry(fastRetry), bus.WithLogger(logger(t)))
	const n, nh = 2000, 2
	fa := newFirstAfter(nh)
	tallies := subscribeTallies(t, handlersBus, "cluster.h", nh, fa.mark, bus.WithConcurrency(2))
	pubBus := bustest.New(t, bus.WithTransport(newTransport()), bus.WithLogger(logger(t)))
	pub := newPublisher(pubBus, "cluster")
	pub.workers = 4

	nc, err := natsgo.Connect(c.URL(), natsgo.MaxReconnects(-1), natsgo.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	streamInfo := func() (*jetstream.StreamInfo, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, hnats.DefaultStreamName)
		if err != nil {
			return nil, err
		}
		return s.Info(ctx)
	}

	until := time.Now().Add(3 * time.Minute)
	done := make(chan []int, 1)
	go func() { done <- pub.run(0, n, until) }()
	bustest.Eventually(t, wait, func() bool { return len(pub.published()) >= n/4 }, "a quarter of the events published")
	info, err := streamInfo()
	if err != nil || info.Cluster == nil || info.Cluster.Leader == "" {
		t.Fatalf("stream leader: %+v, %v", info, err)
	}
	leader := info.Cluster.Leader
	killed := time.Now()
	if err := c.Shutdown(leader); err != nil {
		t.Fatalf("kill %q: %v", leader, err)
	}
	fa.since.Store(time.Now().UnixNano())
	failed := <-done
	if len(failed) > 0 {
		t.Fatalf("gave up publishing %d events: %v (errors: %s)", len(failed), failed[:min(10, len(failed))], pub.errorSummary())
	}
	published := pub.published()
	for i, tc := range tallies {
		tc.waitFor(t, 3*wait, func() bool {
			for seq := range published {
				if tc.ok[seq] == 0 {
					return false
				}
			}
			return true
		}, fmt.Sprintf("handler %d has every event whose Publish returned nil", i))
		tc.check(t, n, fmt.Sprintf("handler %d", i))
	}
	all := time.Since(killed)
	var newLeader string
	var msgs uint64
	bustest.Eventually(t, wait, func() bool {
		info, err := streamInfo()
		if err != nil || info.Cluster == nil {
			return false
		}
		newLeader, msgs = info.Cluster.Leader, info.State.Msgs
		return true
	}, "stream info after the failover")

	f := figures{fault: "12-cluster-leader-loss", transport: "nats-cluster-R3", handlers: nh, sent: len(published),
		poisoned: len(poisonList(t, handlersBus, "")), recover: fa.latest(killed)}
	for _, tc := range tallies {
		f.delivered += tc.distinct()
		f.dups += tc.duplicates()
	}
	f.add("publish_errors", pub.errs.Load())
	f.add("killed_leader", leader)
	f.add("new_leader", newLeader)
	f.add("stream_msgs", msgs)
	f.add("all_delivered_after_kill", all)
	f.log(t)
	t.Logf("publish errors: %s", pub.errorSummary())
	if f.poisoned != 0 {
		t.Errorf("%d poison records", f.poisoned)
	}
	if msgs != n {
		t.Errorf("the stream holds %d messages for %d events: a retry with the same message ID was stored twice, or one was lost", msgs, n)
	}
}
