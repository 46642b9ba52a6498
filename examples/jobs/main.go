// Command jobs is an HTTP service that runs its work as background jobs over
// a Herald bus: each request is accepted at once (202 Accepted, with the job's
// status URL in Location), its work is done by a handler, and GET /jobs/{id}
// reports where the job is, from the bus's delivery tracking.
//
//	POST /emails     sends an email over SMTP, retried while the server fails, then poisoned
//	POST /images     makes a thumbnail of a PNG or JPEG upload
//	POST /imports    imports a CSV file, one event per row, with bounded concurrency
//	GET  /jobs/{id}  the job's status
//	GET  /quote      a price, by request/reply to a pricing handler
//
// The SMTP server it sends to runs in the same process (go-smtp, on a free
// port of 127.0.0.1), a stand-in for a mail relay: GET /mailbox lists what it
// received, and POST /mailbox/fail?next=N makes it fail.
//
// It runs on the memory transport by default, and over NATS JetStream with
// -nats (then its blobs, uploads and thumbnails, live in a JetStream key-value
// bucket, so that several replicas can serve one another's jobs). On SIGINT it
// stops taking requests, lets the ones in flight finish, and closes the bus:
// on memory every job accepted is handled before it exits; over NATS the jobs
// not handled yet stay in the stream for the next replica.
//
//	go run ./examples/jobs
//	go run ./examples/jobs -addr 127.0.0.1:9090 -nats nats://127.0.0.1:4222
//
// The README's "Background jobs: a walkthrough" shows a session with curl.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "jobs:", err)
		os.Exit(1)
	}
}

// run is main with its arguments, output and ctx, for the tests: it serves
// until ctx ends, then shuts down cleanly.
func run(ctx context.Context, args []string, out io.Writer) error { return serve(ctx, args, out, nil) }

// serve is run; ready, when not nil, is called with the app and the HTTP
// address once it serves (the tests' handle on the app's SMTP server).
func serve(ctx context.Context, args []string, out io.Writer, ready func(a *app, addr string)) error {
	cfg := defaultConfig()
	fs := flag.NewFlagSet("jobs", flag.ContinueOnError)
	fs.SetOutput(out)
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&cfg.NATSURL, "nats", "", "NATS server URL; empty runs on the memory transport")
	fs.StringVar(&cfg.Stream, "stream", cfg.Stream, "JetStream stream of the events (with -nats)")
	fs.StringVar(&cfg.Prefix, "prefix", cfg.Prefix, "subject prefix of the events (with -nats)")
	fs.StringVar(&cfg.Bucket, "bucket", cfg.Bucket, "JetStream key-value bucket of uploads, thumbnails and import records (with -nats)")
	fs.Int64Var(&cfg.MaxUpload, "max-upload", cfg.MaxUpload, "largest image upload, in bytes")
	fs.IntVar(&cfg.ImportWorkers, "import-workers", cfg.ImportWorkers, "CSV rows imported at once")
	fs.IntVar(&cfg.EmailRetry.MaxAttempts, "email-attempts", cfg.EmailRetry.MaxAttempts, "attempts to send an email before it is poisoned")
	fs.DurationVar(&cfg.EmailRetry.RedeliveryDelay, "email-retry-delay", cfg.EmailRetry.RedeliveryDelay, "delay before an email's first retry (doubling after)")
	fs.DurationVar(&cfg.QuoteTimeout, "quote-timeout", cfg.QuoteTimeout, "how long GET /quote waits for the pricing handler")
	fs.DurationVar(&cfg.StatusTTL, "status-ttl", cfg.StatusTTL, "how long a job's status is kept after its last change")
	fs.BoolVar(&cfg.NoPricing, "no-pricing", false, "do not run the pricing handler (GET /quote answers 503)")
	shutdownTimeout := fs.Duration("shutdown-timeout", 30*time.Second, "how long a shutdown may take to finish the accepted jobs")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if cfg.MaxUpload < 1 || cfg.ImportWorkers < 1 || cfg.EmailRetry.MaxAttempts < 1 || cfg.QuoteTimeout <= 0 || cfg.StatusTTL <= 0 || *shutdownTimeout <= 0 {
		return errors.New("-max-upload, -import-workers, -email-attempts, -quote-timeout, -status-ttl and -shutdown-timeout must be positive")
	}
	cfg.Log = out

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	a, err := newApp(ctx, cfg)
	if err != nil {
		_ = ln.Close()
		return err
	}
	transport := "memory"
	if cfg.NATSURL != "" {
		transport = fmt.Sprintf("NATS at %s, stream %s, bucket %s", cfg.NATSURL, cfg.Stream, cfg.Bucket)
	}
	a.say("jobs: serving http://%s (%s); SMTP server at %s", ln.Addr(), transport, a.mail.Addr())

	srv := &http.Server{Handler: a.Handler(), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if ready != nil {
		ready(a, ln.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err = <-served: // the listener failed
	}

	// Shut down: no new requests; the ones in flight finish (a job they
	// publish is accepted, or refused with 503); then the bus finishes the
	// accepted jobs (memory) or leaves them in the stream (NATS).
	a.say("jobs: shutting down: no new requests")
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), *shutdownTimeout)
	defer cancel()
	err = errors.Join(err, srv.Shutdown(sctx))
	a.say("jobs: finishing the accepted jobs")
	if cerr := a.Close(sctx); cerr != nil {
		err = errors.Join(err, fmt.Errorf("closing the bus: %w", cerr))
	}
	switch {
	case err != nil:
	case cfg.NATSURL == "":
		a.say("jobs: stopped; every accepted job was handled")
	default:
		a.say("jobs: stopped; the jobs not handled yet wait in the stream")
	}
	return err
}
