package main

import (
	"context"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/examples/microservices/billing"
	"github.com/heraldbus/herald/examples/microservices/events"
	"github.com/heraldbus/herald/examples/microservices/shipping"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(rabbitmqtest.Swept(m)) }

func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out bustest.Buffer
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
	m := natstest.NewMachine(t, "heraldex")
	url, stream, prefix := m.URL, m.StreamName, m.SubjectPrefix
	out := runOK(t, "-nats", url, "-stream", stream, "-prefix", prefix, "-orders", "5", "-timeout", "20s")
	if !strings.Contains(out, "done: 5 of 5 orders shipped") {
		t.Errorf("output:\n%s", out)
	}
}

// With -ops, each service's operator page shows its handler and what it
// handled, and run returns once its ctx ends.
func TestRunOps(t *testing.T) {
	var out bustest.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"-orders", "3", "-timeout", "20s", "-ops", "127.0.0.1:0"}, &out) }()
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(out.String(), "serving the operator pages until interrupted") {
		if time.Now().After(deadline) {
			t.Fatalf("the orders did not ship:\n%s", out.String())
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, with a deadline
	}
	m := regexp.MustCompile(`operator pages at (\S+)`).FindStringSubmatch(out.String())
	if m == nil {
		t.Fatalf("no URL of the pages:\n%s", out.String())
	}
	for page, want := range map[string]string{"": `href="shipping/"`, "billing/": `data-handler="` + billing.HandlerName + `"`, "shipping/": `data-k="handled">3<`} {
		resp, err := http.Get(m[1] + page)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if !strings.Contains(string(body), want) {
			t.Errorf("%s%s lacks %q", m[1], page, want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestBadFlags(t *testing.T) {
	var out bustest.Buffer
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

// With -rabbitmq the same services run over RabbitMQ (RABBITMQ_URL), on names
// of the test's own.
func TestRunRabbitMQ(t *testing.T) {
	br := rabbitmqtest.New(t)
	out := runOK(t, "-rabbitmq", br.URL, "-prefix", br.Prefix, "-orders", "7", "-timeout", "30s")
	if !strings.Contains(out, "done: 7 of 7 orders shipped") || strings.Count(out, "shipping: shipped") < 7 ||
		strings.Contains(out, "embedded nats-server") {
		t.Errorf("output:\n%s", out)
	}
}
