package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/examples/microservices/billing"
	"github.com/heraldbus/herald/examples/microservices/events"
	"github.com/heraldbus/herald/examples/microservices/shipping"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// syncBuffer is a bytes.Buffer safe for the services' concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out syncBuffer
	begin := time.Now()
	if err := run(context.Background(), args, &out); err != nil {
		t.Fatalf("run %v: %v\n%s", args, err, out.String())
	}
	t.Logf("run %v took %v", args, time.Since(begin))
	return out.String()
}

func TestRunEmbedded(t *testing.T) {
	out := runOK(t, "-orders", "7", "-timeout", "20s")
	if !strings.Contains(out, "done: 7 of 7 orders shipped") || strings.Count(out, "shipping: shipped") < 7 {
		t.Errorf("output:\n%s", out)
	}
}

// The same services over Kafka, on an in-process cluster.
func TestRunKafka(t *testing.T) {
	out := runOK(t, "-kafka", "kfake", "-orders", "5", "-timeout", "30s")
	if !strings.Contains(out, "in-process Kafka cluster") || !strings.Contains(out, "done: 5 of 5 orders shipped") ||
		strings.Count(out, "shipping: shipped") < 5 {
		t.Errorf("output:\n%s", out)
	}
}

// With NATS_URL set, the example runs against that server, on a stream of its
// own, deleted afterwards.
func TestRunNATSURL(t *testing.T) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		t.Skip("NATS_URL not set")
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	stream, prefix := "HERALDEX_"+strings.ToUpper(id), "heraldex_"+id
	t.Cleanup(func() {
		nc, err := natsgo.Connect(url)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range []string{stream, stream + "_POISON"} {
			_ = js.DeleteStream(ctx, s)
		}
	})
	out := runOK(t, "-nats", url, "-stream", stream, "-prefix", prefix, "-orders", "5", "-timeout", "20s")
	if !strings.Contains(out, "done: 5 of 5 orders shipped") {
		t.Errorf("output:\n%s", out)
	}
}

func TestBadFlags(t *testing.T) {
	var out syncBuffer
	if err := run(context.Background(), []string{"-orders", "0"}, &out); err == nil {
		t.Error("run with -orders 0 succeeded")
	}
	if err := run(context.Background(), []string{"-nats", "nats://127.0.0.1:1", "-timeout", "5s"}, &out); err == nil {
		t.Error("run against a closed port succeeded")
	}
}

// The services' handlers, unchanged, in a monolith: one memory bus.
func TestHandlersInAMonolith(t *testing.T) {
	b := bustest.New(t)
	if err := billing.Register(b); err != nil {
		t.Fatal(err)
	}
	s := shipping.New(b)
	if err := s.Register(); err != nil {
		t.Fatal(err)
	}
	shipped := bustest.Record[events.OrderShipped](t, b, "test.shipped")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := bus.Publish(ctx, b, events.OrderPlaced{OrderID: "o-1", Cents: 500}); err != nil {
		t.Fatal(err)
	}
	if err := s.Wait(ctx, []string{"o-1"}); err != nil {
		t.Fatal(err)
	}
	if got := shipped.Wait(t, 1, 10*time.Second); got[0].OrderID != "o-1" {
		t.Errorf("shipped %+v", got)
	}
}
