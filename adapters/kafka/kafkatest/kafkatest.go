// Package kafkatest runs an in-process Kafka cluster (franz-go's kfake, which
// speaks the Kafka protocol) for tests and examples: no installed broker
// needed.
//
//	c := kafkatest.New(t)                  // closed when the test ends
//	tr, err := kafka.New(kafka.Config{Brokers: c.Brokers()})
//
// kfake is a functional stand-in, not a performance reference: it keeps
// every record in memory and replicates nothing.
package kafkatest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
)

// MinSessionTimeout is the smallest consumer group session timeout the
// cluster accepts (a real broker's default is 6s): tests of a crashed member
// can use a short one.
const MinSessionTimeout = 100 * time.Millisecond

// Cluster is an in-process Kafka cluster of one broker on 127.0.0.1, at a
// free port. Its methods are safe for concurrent use.
type Cluster struct {
	c *kfake.Cluster
}

// Start starts a cluster. Close it when done. opts are passed on to kfake
// after the package's own (one broker, MinSessionTimeout).
func Start(opts ...kfake.Opt) (*Cluster, error) {
	all := append([]kfake.Opt{kfake.NumBrokers(1), kfake.GroupMinSessionTimeout(MinSessionTimeout)}, opts...)
	c, err := kfake.NewCluster(all...)
	if err != nil {
		return nil, fmt.Errorf("kafkatest: %w", err)
	}
	return &Cluster{c: c}, nil
}

// New starts a cluster and closes it when t ends; it fails t if the cluster
// cannot start.
func New(t testing.TB, opts ...kfake.Opt) *Cluster {
	t.Helper()
	c, err := Start(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// Brokers returns the seed brokers, for kafka.Config.Brokers.
func (c *Cluster) Brokers() []string { return c.c.ListenAddrs() }

// Kfake returns the kfake cluster, to inject faults or inspect groups.
func (c *Cluster) Kfake() *kfake.Cluster { return c.c }

// Close stops the cluster. It is safe to call more than once.
func (c *Cluster) Close() { c.c.Close() }

// Shared returns a topic and group prefix of the test's own on the real
// cluster at seeds (a test run's KAFKA_BROKERS), so that runs never collide;
// the topics under it are deleted when t ends. The cluster must answer: t
// fails without it.
func Shared(t testing.TB, seeds []string) (prefix string) {
	t.Helper()
	var r [6]byte
	_, _ = rand.Read(r[:])
	prefix = "heraldtest." + hex.EncodeToString(r[:]) + "."
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds...))
	if err != nil {
		t.Fatalf("KAFKA_BROKERS=%v: %v", seeds, err)
	}
	t.Cleanup(cl.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Ping(ctx); err != nil {
		t.Fatalf("KAFKA_BROKERS=%v is set but does not answer: %v", seeds, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		adm := kadm.NewClient(cl)
		topics, err := adm.ListTopics(ctx)
		if err != nil {
			t.Errorf("kafkatest: delete the test's topics: %v", err)
			return
		}
		var mine []string
		for _, name := range topics.Names() {
			if strings.HasPrefix(name, prefix) {
				mine = append(mine, name)
			}
		}
		if _, err := adm.DeleteTopics(ctx, mine...); err != nil {
			t.Errorf("kafkatest: delete the test's topics: %v", err)
		}
	})
	return prefix
}
