package natstest

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Cluster is an embedded JetStream cluster of n servers, named "n1" ... "nN",
// on 127.0.0.1, each with a store directory of its own, logging nothing. Use
// it for leader-loss tests: streams with Replicas up to n survive losing a
// minority. Its methods are safe for concurrent use.
type Cluster struct {
	mu    sync.Mutex
	nodes []*node
	done  bool
}

type node struct {
	name        string
	dir         string
	port        int
	clusterPort int
	srv         *server.Server // nil while shut down
}

// StartCluster starts an n-server cluster and returns once JetStream has a
// meta leader. Close it when done.
func StartCluster(n int) (*Cluster, error) {
	if n < 1 {
		return nil, errors.New("natstest: cluster of fewer than 1 server")
	}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	c := &Cluster{}
	for i := range n {
		dir, err := os.MkdirTemp("", "natstest-cluster-")
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("natstest: %w", err)
		}
		c.nodes = append(c.nodes, &node{name: fmt.Sprintf("n%d", i+1), dir: dir, port: ports[2*i], clusterPort: ports[2*i+1]})
	}
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i, nd := range c.nodes {
		wg.Go(func() { errs[i] = c.start(nd) })
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		c.Close()
		return nil, err
	}
	if err := c.waitMetaLeader(); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// NewCluster starts an n-server cluster and closes it when t ends; it fails t
// if the cluster cannot start.
func NewCluster(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartCluster(n)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("natstest: %w", err)
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

func (c *Cluster) start(nd *node) error {
	var routes []*url.URL
	for _, o := range c.nodes {
		if o != nd {
			routes = append(routes, &url.URL{Scheme: "nats", Host: fmt.Sprintf("127.0.0.1:%d", o.clusterPort)})
		}
	}
	opts := &server.Options{
		ServerName: nd.name,
		Host:       "127.0.0.1",
		Port:       nd.port,
		JetStream:  true,
		StoreDir:   nd.dir,
		NoLog:      true,
		NoSigs:     true,
		Cluster:    server.ClusterOpts{Name: "natstest", Host: "127.0.0.1", Port: nd.clusterPort},
		Routes:     routes,
	}
	var err error
	for deadline := time.Now().Add(readyTimeout); ; {
		var srv *server.Server
		if srv, err = server.NewServer(opts); err == nil {
			srv.Start()
			if srv.ReadyForConnections(readyTimeout) {
				nd.srv = srv
				return nil
			}
			srv.Shutdown()
			srv.WaitForShutdown()
			err = fmt.Errorf("natstest: server %s not ready for connections", nd.name)
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond) // a port may take a moment to be free again
	}
}

// waitMetaLeader waits until a running server is the JetStream meta leader,
// every running one is current, and the leader sees every running one online
// (else placing a stream's replicas can fail with "peer offline").
func (c *Cluster) waitMetaLeader() error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		leader, current, running, online := false, true, 0, 0
		for _, nd := range c.nodes {
			if nd.srv == nil {
				continue
			}
			running++
			if nd.srv.JetStreamIsLeader() {
				leader = true
				online = len(nd.srv.JetStreamClusterPeers())
			}
			current = current && nd.srv.JetStreamIsCurrent()
		}
		if leader && current && online >= running {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("natstest: no JetStream meta leader")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL returns the client URLs of every server, comma separated: a client
// given it reconnects to another server when one goes down.
func (c *Cluster) URL() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	urls := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		urls[i] = fmt.Sprintf("nats://127.0.0.1:%d", nd.port)
	}
	return strings.Join(urls, ",")
}

// Names returns the servers' names.
func (c *Cluster) Names() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	names := make([]string, len(c.nodes))
	for i, nd := range c.nodes {
		names[i] = nd.name
	}
	return names
}

// stop shuts the node's server down, if it runs, keeping its store.
func (nd *node) stop() {
	if nd.srv != nil {
		nd.srv.Shutdown()
		nd.srv.WaitForShutdown()
		nd.srv = nil
	}
}

// Shutdown stops the server called name (keeping its store); Restart starts it
// again.
func (c *Cluster) Shutdown(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	nd, err := c.node(name)
	if err != nil {
		return err
	}
	nd.stop()
	return nil
}

// Restart starts the server called name again (after Shutdown) on its ports
// and store, and waits until the cluster has a meta leader.
func (c *Cluster) Restart(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return errors.New("natstest: restart in a closed cluster")
	}
	nd, err := c.node(name)
	if err != nil {
		return err
	}
	nd.stop()
	if err := c.start(nd); err != nil {
		return err
	}
	return c.waitMetaLeader()
}

func (c *Cluster) node(name string) (*node, error) {
	for _, nd := range c.nodes {
		if nd.name == name {
			return nd, nil
		}
	}
	return nil, fmt.Errorf("natstest: no server %q in the cluster", name)
}

// Close shuts every server down and removes their stores. It is safe to call
// more than once.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.done {
		return
	}
	c.done = true
	var wg sync.WaitGroup
	for _, nd := range c.nodes {
		wg.Go(nd.stop)
	}
	wg.Wait()
	for _, nd := range c.nodes {
		_ = os.RemoveAll(nd.dir)
	}
}
