// Command microservices runs an order flow as three services, each with its
// own Herald bus and its own NATS JetStream transport, as three processes
// would:
//
//	orders   publishes OrderPlaced
//	billing  handles OrderPlaced (billing.charge-card), publishes PaymentTaken
//	shipping handles PaymentTaken (shipping.ship-order), publishes OrderShipped
//
// The services share only the event types (package events) and the NATS
// server. By default the program starts an embedded nats-server (JetStream on,
// a temporary store) and all services in this one process; with -nats it
// connects to a server instead, and with -rabbitmq the services use a RabbitMQ
// broker (the same handlers: only the transport constructor differs). It places a few orders, waits until shipping
// has handled them all, closes the services and exits 0.
//
// With -kafka the services talk over Kafka instead, with the same handlers:
// -kafka with broker addresses connects to that cluster, -kafka kfake (or
// -kafka=) starts an in-process one (franz-go's kfake).
//
//	go run ./examples/microservices
//	go run ./examples/microservices -nats nats://127.0.0.1:4222 -orders 20
//	go run ./examples/microservices -rabbitmq amqp://guest:guest@127.0.0.1:5672/
//	go run ./examples/microservices -kafka kfake
//	go run ./examples/microservices -kafka 127.0.0.1:9092
//
// With -ops ADDR it serves each service's operator page (package ops) under
// /ops/<service>/ on ADDR, and stays up after the orders until interrupted:
//
//	go run ./examples/microservices -ops 127.0.0.1:8080
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/heraldbus/herald/adapters/kafka"
	"github.com/heraldbus/herald/adapters/kafka/kafkatest"
	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/examples/microservices/billing"
	"github.com/heraldbus/herald/examples/microservices/events"
	"github.com/heraldbus/herald/examples/microservices/shipping"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "microservices:", err)
		os.Exit(1)
	}
}

// run is main with its arguments, output and ctx, for the test.
func run(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("microservices", flag.ContinueOnError)
	fs.SetOutput(out)
	url := fs.String("nats", "", "NATS server URL; empty starts an embedded server")
	amqpURL := fs.String("rabbitmq", "", "RabbitMQ URL (amqp://user:pass@host:5672/); when set, the services use RabbitMQ, not NATS")
	orders := fs.Int("orders", 5, "how many orders to place")
	stream := fs.String("stream", nats.DefaultStreamName, "JetStream stream of the events")
	prefix := fs.String("prefix", nats.DefaultSubjectPrefix, "subject prefix of the events (NATS), or prefix of exchange and queue names (RabbitMQ)")
	timeout := fs.Duration("timeout", 30*time.Second, "give up after this long")
	opsAddr := fs.String("ops", "", "serve the services' operator pages on this address (e.g. 127.0.0.1:8080) and stay up until interrupted")
	brokers := fs.String("kafka", "", "Kafka seed brokers, comma separated, to use Kafka instead of NATS; kfake (or empty) starts an in-process cluster")
	if err := fs.Parse(args); err != nil {
		return err
	}
	useKafka := false
	fs.Visit(func(f *flag.Flag) { useKafka = useKafka || f.Name == "kafka" })
	if *orders < 1 {
		return errors.New("-orders must be at least 1")
	}
	parent := ctx // with -ops, the pages stay up until it ends
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	var newTransport func() (transport.Transport, error)
	switch {
	case useKafka:
		if *brokers == "" || *brokers == "kfake" {
			c, err := kafkatest.Start()
			if err != nil {
				return err
			}
			defer c.Close()
			*brokers = strings.Join(c.Brokers(), ",")
			fmt.Fprintf(out, "in-process Kafka cluster (kfake) at %s\n", *brokers)
		}
		newTransport = func() (transport.Transport, error) {
			return kafka.New(kafka.Config{Brokers: strings.Split(*brokers, ",")})
		}
	case *amqpURL != "":
		newTransport = func() (transport.Transport, error) { return newRabbitMQ(*amqpURL, *prefix) }
	case *url == "":
		srv, err := natstest.Start()
		if err != nil {
			return err
		}
		defer srv.Close()
		*url = srv.URL()
		fmt.Fprintf(out, "embedded nats-server at %s\n", *url)
	}
	if newTransport == nil {
		newTransport = func() (transport.Transport, error) { return newNATS(*url, *stream, *prefix) }
	}
	say := newSay(out)

	// One bus per service, each with its own transport (its own connection),
	// as separate processes would have. Only the transport differs from a
	// monolith's bus.New().
	newService := func(name string) (*bus.Bus, error) {
		t, err := newTransport()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		b, err := bus.New(bus.WithTransport(t)) // the bus owns t: Close closes it
		if err != nil {
			_ = t.Close()
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		return b, nil
	}
	var started []*bus.Bus
	defer func() {
		cctx, ccancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer ccancel()
		for _, b := range started {
			err = errors.Join(err, b.Close(cctx))
		}
	}()
	start := func(name string, register func(b *bus.Bus) error) (*bus.Bus, error) {
		b, err := newService(name)
		if err != nil {
			return nil, err
		}
		if register != nil {
			if err := register(b); err != nil {
				_ = b.Close(ctx)
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		if err := b.Start(ctx); err != nil {
			_ = b.Close(ctx)
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		started = append(started, b)
		return b, nil
	}

	// The consumers first: a handler name that never ran before starts with
	// the events published after it first subscribed (a running system has
	// its consumers already, and they keep what is published while down).
	if _, err := start("billing", func(b *bus.Bus) error {
		charge := billing.ChargeCard(b)
		_, err := bus.Subscribe(b, billing.HandlerName, func(ctx context.Context, e events.OrderPlaced) error {
			if err := charge(ctx, e); err != nil {
				return err
			}
			say("billing:  charged %s (%d cents)", e.OrderID, e.Cents)
			return nil
		}, bus.WithConcurrency(4))
		return err
	}); err != nil {
		return err
	}
	var shipper *shipping.Shipper
	if _, err := start("shipping", func(b *bus.Bus) error {
		shipper = shipping.New(b)
		_, err := bus.Subscribe(b, shipping.HandlerName, func(ctx context.Context, e events.PaymentTaken) error {
			if err := shipper.Ship(ctx, e); err != nil {
				return err
			}
			m, _ := handlers.FromContext(ctx)
			say("shipping: shipped %s (correlation %s)", e.OrderID, m.CorrelationID)
			return nil
		}, bus.WithConcurrency(2))
		return err
	}); err != nil {
		return err
	}
	ordersBus, err := start("orders", nil)
	if err != nil {
		return err
	}
	if *opsAddr != "" {
		url, stop, err := serveOps(*opsAddr, map[string]*bus.Bus{"billing": started[0], "shipping": started[1], "orders": ordersBus},
			[]string{"billing", "shipping", "orders"})
		if err != nil {
			return err
		}
		defer stop()
		say("operator pages at %s", url)
	}

	// Order IDs unique to this run (a shared server may hold older ones): a
	// few random characters of an ID.
	run := event.NewID()[7:12]
	ids := make([]string, *orders)
	for i := range ids {
		ids[i] = fmt.Sprintf("o-%s-%d", run, i+1)
		e := events.OrderPlaced{OrderID: ids[i], Customer: fmt.Sprintf("customer-%d", i%3), Cents: int64(1000 + 250*i)}
		if err := bus.Publish(ctx, ordersBus, e); err != nil {
			return fmt.Errorf("orders: place %s: %w", ids[i], err)
		}
		say("orders:   placed %s", ids[i])
	}
	if err := shipper.Wait(ctx, ids); err != nil {
		return fmt.Errorf("waiting for shipping: %w", err)
	}
	say("done: %d of %d orders shipped", len(ids), len(ids))
	if *opsAddr != "" {
		say("serving the operator pages until interrupted")
		<-parent.Done()
	}
	return nil
}

// newSay returns a printf to out that is safe for concurrent use.
func newSay(out io.Writer) func(format string, args ...any) {
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
}

// newNATS and newRabbitMQ are the one line that differs between transports.
func newNATS(url, stream, prefix string) (transport.Transport, error) {
	return nats.New(nats.Config{URL: url, StreamName: stream, SubjectPrefix: prefix})
}

func newRabbitMQ(url, prefix string) (transport.Transport, error) {
	return rabbitmq.New(rabbitmq.Config{URL: url, Prefix: prefix})
}
