// Command observability runs a small shop on a Herald bus with OpenTelemetry
// tracing and metrics, and serves the metrics for Prometheus on /metrics
// (OpenTelemetry's Prometheus exporter behind promhttp) and Bus.Stats as JSON
// on /stats.
//
// Three orders are placed, each under an HTTP-style root span. Billing fails
// its first attempt on o-2 and retries; email refuses o-3 (a permanent error:
// poisoned); shipping is held back until the others are done, so its backlog
// shows on /metrics, then released. The program prints the herald series of
// /metrics while shipping is held and after, and the trace of o-2, then
// exits; with -serve it keeps serving until interrupted.
//
//	go run ./examples/observability
//	go run ./examples/observability -serve 127.0.0.1:9464   # then: curl 127.0.0.1:9464/metrics
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// OrderPlaced is published when a customer places an order.
type OrderPlaced struct {
	OrderID string `json:"order_id"`
	Cents   int64  `json:"cents"`
}

// PaymentCaptured is published by billing once an order is paid.
type PaymentCaptured struct {
	OrderID string `json:"order_id"`
}

// shop is the bus, its handlers and its telemetry.
type shop struct {
	b       *bus.Bus
	tp      *sdktrace.TracerProvider
	mp      *sdkmetric.MeterProvider
	spans   *spanLog
	reg     *prometheus.Registry
	release chan struct{} // closed: shipping may go on
	once    sync.Once
}

// newShop builds the bus with both providers and subscribes the handlers; the
// caller starts it.
func newShop() (*shop, error) {
	s := &shop{spans: &spanLog{}, reg: prometheus.NewRegistry(), release: make(chan struct{})}
	exp, err := otelprom.New(otelprom.WithRegisterer(s.reg), otelprom.WithoutScopeInfo(), otelprom.WithoutTargetInfo())
	if err != nil {
		return nil, err
	}
	s.mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(exp))
	s.tp = sdktrace.NewTracerProvider(sdktrace.WithSyncer(s.spans))
	s.b, err = bus.New(bus.WithTracing(s.tp), bus.WithMetrics(s.mp),
		bus.WithDefaultRetry(middleware.RetryPolicy{InitialInterval: 20 * time.Millisecond}))
	if err != nil {
		return nil, err
	}
	if err := errors.Join(
		subscribe(s.b, "billing.charge", s.charge),
		subscribe(s.b, "email.confirm", s.confirm),
		subscribe(s.b, "shipping.pack", s.pack),
	); err != nil {
		return nil, err
	}
	return s, nil
}

func subscribe[E any](b *bus.Bus, name string, fn func(context.Context, E) error) error {
	_, err := bus.Subscribe(b, name, fn)
	return err
}

// charge fails its first attempt on o-2, then publishes the payment with the
// handler's ctx, which continues the trace.
func (s *shop) charge(ctx context.Context, e OrderPlaced) error {
	if m, _ := handlers.FromContext(ctx); e.OrderID == "o-2" && m.Attempt == 1 {
		return errors.New("card network busy")
	}
	return bus.Publish(ctx, s.b, PaymentCaptured{OrderID: e.OrderID})
}

// confirm refuses o-3 for good: it goes to the poison queue.
func (s *shop) confirm(_ context.Context, e OrderPlaced) error {
	if e.OrderID == "o-3" {
		return bus.Permanent(errors.New("mailbox does not exist"))
	}
	return nil
}

// pack waits until shipping is released.
func (s *shop) pack(ctx context.Context, _ PaymentCaptured) error {
	select {
	case <-s.release:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Release lets shipping go on. It is safe to call more than once.
func (s *shop) Release() { s.once.Do(func() { close(s.release) }) }

// mux serves /metrics (Prometheus) and /stats (Bus.Stats as JSON).
func (s *shop) mux() http.Handler {
	m := http.NewServeMux()
	m.Handle("/metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	m.HandleFunc("/stats", func(w http.ResponseWriter, r *http.Request) {
		stats, err := s.b.Stats(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(stats)
	})
	return m
}

// placeOrders publishes three orders, each under the root span of an HTTP
// request that would have placed it.
func (s *shop) placeOrders(ctx context.Context) error {
	tracer := s.tp.Tracer("shop/http")
	for i := 1; i <= 3; i++ {
		rctx, span := tracer.Start(ctx, "POST /orders", trace.WithSpanKind(trace.SpanKindServer))
		err := bus.Publish(rctx, s.b, OrderPlaced{OrderID: fmt.Sprintf("o-%d", i), Cents: int64(i) * 1000})
		span.End()
		if err != nil {
			return err
		}
	}
	return nil
}

// waitStats polls Bus.Stats until cond holds for the handler name, or ctx ends.
func (s *shop) waitStats(ctx context.Context, name string, cond func(bus.HandlerStats) bool) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		stats, err := s.b.Stats(ctx)
		if err == nil {
			for _, st := range stats {
				if st.Handler == name && cond(st) {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w (last stats %+v)", name, ctx.Err(), stats)
		case <-tick.C:
		}
	}
}

// close closes the bus, then flushes and shuts the providers down.
func (s *shop) close(ctx context.Context) error {
	s.Release()
	return errors.Join(s.b.Close(ctx), s.tp.Shutdown(ctx), s.mp.Shutdown(ctx))
}

// scrape GETs url and returns the lines of the Herald metrics of a handler
// (and the publish counter), without comments.
func scrape(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	var lines []string
	for _, l := range strings.Split(string(body), "\n") {
		if (strings.HasPrefix(l, "herald_") || strings.HasPrefix(l, "messaging_")) && !strings.Contains(l, "_bucket{") {
			lines = append(lines, l)
		}
	}
	return lines, nil
}

// run is the demo: it serves on ln, places the orders, prints the metrics
// while shipping is held and after, and the trace of o-2. With serve, it then
// serves until ctx ends.
func run(ctx context.Context, ln net.Listener, out io.Writer, serve bool) (err error) {
	s, err := newShop()
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: s.mux(), ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err = errors.Join(err, srv.Shutdown(cctx), s.close(cctx))
		if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
			err = errors.Join(err, serr)
		}
	}()
	if err := s.b.Start(ctx); err != nil {
		return err
	}
	if err := s.placeOrders(ctx); err != nil {
		return err
	}
	url := "http://" + ln.Addr().String() + "/metrics"
	// Billing and email are done; shipping holds one payment, two wait.
	for name, cond := range map[string]func(bus.HandlerStats) bool{
		"billing.charge": func(st bus.HandlerStats) bool { return st.Handled == 3 },
		"email.confirm":  func(st bus.HandlerStats) bool { return st.Handled+st.Poisoned == 3 },
		"shipping.pack":  func(st bus.HandlerStats) bool { return st.InFlight == 1 && st.Backlog == 2 },
	} {
		if err := s.waitStats(ctx, name, cond); err != nil {
			return err
		}
	}
	lines, err := scrape(ctx, url)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "GET /metrics while shipping is held:\n  %s\n", strings.Join(lines, "\n  "))
	s.Release()
	if err := s.waitStats(ctx, "shipping.pack", func(st bus.HandlerStats) bool { return st.Handled == 3 && st.Backlog == 0 }); err != nil {
		return err
	}
	if lines, err = scrape(ctx, url); err != nil {
		return err
	}
	fmt.Fprintf(out, "\nGET /metrics after:\n  %s\n", strings.Join(lines, "\n  "))
	fmt.Fprintf(out, "\nThe trace of o-2:\n%s", s.spans.tree())
	if serve {
		fmt.Fprintf(out, "\nserving %s and /stats; Ctrl-C to stop\n", url)
		<-ctx.Done()
	}
	return nil
}

func main() {
	addr := flag.String("serve", "", "keep serving /metrics and /stats on this address (default: print and exit)")
	flag.Parse()
	listen := *addr
	if listen == "" {
		listen = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		log.Fatal(err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if *addr == "" {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	if err := run(ctx, ln, os.Stdout, *addr != ""); err != nil {
		log.Fatal(err)
	}
}
