package faults_test

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// cluster is an embedded JetStream cluster: nodes on 127.0.0.1 with random
// client ports, routes between them, each storing in a temp dir of its own.
// natstest has no cluster helper; this is the test's own.
type cluster struct {
	mu    sync.Mutex
	nodes map[string]*server.Server // by server name; a killed node is removed
	urls  []string
}

// startCluster starts n nodes and waits until JetStream has a meta leader.
// Every node still running is shut down when t ends.
func startCluster(t testing.TB, n int) *cluster {
	t.Helper()
	// Reserve the route ports: every node must know the others' at start.
	ports := make([]int, n)
	var ls []net.Listener
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	for _, l := range ls {
		_ = l.Close()
	}
	var routes []string
	for _, p := range ports {
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
	}
	c := &cluster{nodes: map[string]*server.Server{}}
	t.Cleanup(c.shutdown)
	for i, p := range ports {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1),
			Host:       "127.0.0.1",
			Port:       -1,
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster:    server.ClusterOpts{Name: "faults", Host: "127.0.0.1", Port: p},
			Routes:     server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		s.Start()
		c.nodes[opts.ServerName] = s
	}
	for name, s := range c.nodes {
		if !s.ReadyForConnections(10 * time.Second) {
			t.Fatalf("node %s not ready", name)
		}
		c.urls = append(c.urls, s.ClientURL())
	}
	bustest.Eventually(t, wait, func() bool {
		for _, s := range c.nodes {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	}, "a JetStream meta leader")
	return c
}

// URL is every node's client URL, comma separated.
func (c *cluster) URL() string { return strings.Join(c.urls, ",") }

// kill shuts node name down, as if its machine died.
func (c *cluster) kill(name string) bool {
	c.mu.Lock()
	s := c.nodes[name]
	delete(c.nodes, name)
	c.mu.Unlock()
	if s == nil {
		return false
	}
	s.Shutdown()
	s.WaitForShutdown()
	return true
}

func (c *cluster) shutdown() {
	c.mu.Lock()
	nodes := c.nodes
	c.nodes = map[string]*server.Server{}
	c.mu.Unlock()
	for _, s := range nodes {
		s.Shutdown()
	}
	for _, s := range nodes {
		s.WaitForShutdown()
	}
}

// Fault 12: in a 3-node JetStream cluster with an R3 stream, the stream
// leader is killed while 2k events are being published to 2 handlers. Every
// event whose Publish returned nil is delivered to both handlers. (The
// publisher retries a failed Publish with the same message ID, so in the end
// every event's Publish returns nil.)
func TestClusterLeaderLoss(t *testing.T) {
	c := startCluster(t, 3)
	cfg := natsConfig(c.URL())
	cfg.Replicas = 3
	cfg.Retention = hnats.RetentionLimits
	newTransport := func() *hnats.Transport {
		cc := cfg
		cc.Logger = logger(t)
		tr, err := hnats.New(cc)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		return tr
	}
	handlersBus := bustest.New(t, bus.WithTransport(newTransport()), bus.WithRetry(fastRetry), bus.WithLogger(logger(t)))
	const n, nh = 2000, 2
	fa := newFirstAfter(nh)
	tallies := make([]*tally, nh)
	for i := range tallies {
		tallies[i] = newTally()
		fn := tallies[i].handler(func(context.Context, Event, int) error { fa.mark(i); return nil })
		if _, err := bus.Subscribe(handlersBus, fmt.Sprintf("cluster.h%d", i), fn, bus.WithConcurrency(2)); err != nil {
			t.Fatal(err)
		}
	}
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
	if !c.kill(leader) {
		t.Fatalf("no node named %q", leader)
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
