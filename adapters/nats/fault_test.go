package nats_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// On a 3-server cluster with replicated streams, losing the stream's leader
// loses nothing: publishes resume (retried with the same IDs while a new
// leader is elected) and every event reaches the handler.
func TestStreamLeaderLoss(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	// An R3 stream is placed by a Raft vote: on a loaded machine that takes
	// longer than the default RequestTimeout.
	tr := broker{url: c.URL()}.transport(t, func(cfg *nats.Config) { cfg.Replicas = 3; cfg.RequestTimeout = 30 * time.Second })
	b := bustest.New(t, bus.WithTransport(tr))
	r := bustest.Record[OrderPlaced](t, b, "leader.loss", bus.WithConcurrency(2))
	publishOrders(t, b, 0, 10)
	r.Wait(t, 10, wait)

	ctx := testCtx(t)
	s, err := tr.JetStream().Stream(ctx, tr.Config().StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	leader := info.Cluster.Leader
	// publishThrough publishes events from..to-1, each retried (with its
	// message ID) until the cluster takes it.
	publishThrough := func(from, to int, after string) {
		t.Helper()
		for i := from; i < to; i++ {
			bustest.Eventually(t, 30*time.Second, func() bool {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				return bus.Publish(ctx, b, OrderPlaced{Seq: i}, bus.WithMessageID(fmt.Sprintf("leader-%d", i))) == nil
			}, "publish %d after %s", i, after)
		}
	}
	t.Logf("shutting down the stream leader %s (client on %s)", leader, tr.Conn().ConnectedServerName())
	if err := c.Shutdown(leader); err != nil {
		t.Fatal(err)
	}
	begin := time.Now()
	publishThrough(10, 20, "the leader loss")
	t.Logf("publishing resumed within %v", time.Since(begin))
	got := r.Wait(t, 20, 40*time.Second)
	seen := map[int]bool{}
	for _, e := range got {
		seen[e.Seq] = true
	}
	if len(seen) != 20 {
		t.Errorf("after the leader loss got %d distinct events of 20", len(seen))
	}
	t.Logf("all delivered %v after the leader loss", time.Since(begin))

	// Then the server the client is connected to: it reconnects to another
	// and pulls again.
	if err := c.Restart(leader); err != nil {
		t.Fatal(err)
	}
	conn := tr.Conn().ConnectedServerName()
	t.Logf("shutting down %s, the client's server", conn)
	if err := c.Shutdown(conn); err != nil {
		t.Fatal(err)
	}
	begin = time.Now()
	publishThrough(20, 30, "the client's server went down")
	got = r.Wait(t, 30, 40*time.Second)
	for _, e := range got {
		seen[e.Seq] = true
	}
	if len(seen) != 30 {
		t.Errorf("after the client's server went down got %d distinct events of 30", len(seen))
	}
	t.Logf("all delivered %v after the client's server went down (now on %s)", time.Since(begin), tr.Conn().ConnectedServerName())
}
