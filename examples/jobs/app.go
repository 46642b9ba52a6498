package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

// Handler names: each is a queue (memory) or durable consumer (NATS) shared by
// every replica of the service.
const (
	emailHandler  = "jobs.send-email"
	thumbHandler  = "jobs.make-thumbnail"
	importHandler = "jobs.import-row"
	quoteHandler  = "jobs.quote"
)

// EventName gives the events a name of their own (package main would make it
// "main.EmailRequested").
func (EmailRequested) EventName() string     { return "jobs.EmailRequested" }
func (ThumbnailRequested) EventName() string { return "jobs.ThumbnailRequested" }
func (ImportRow) EventName() string          { return "jobs.ImportRow" }

// config is what run's flags set, and what tests set directly.
type config struct {
	NATSURL string // "" runs on the memory transport
	Stream  string // NATS stream of the events
	Prefix  string // NATS subject prefix of the events
	Bucket  string // JetStream key-value bucket of the blobs (NATS only)
	// BucketTTL bounds how long the bucket keeps a blob (NATS only).
	BucketTTL time.Duration

	MaxUpload     int64 // largest image upload, in bytes
	MaxImport     int64 // largest CSV file, in bytes
	ImportWorkers int   // rows imported at once, per replica
	ThumbWorkers  int   // thumbnails made at once, per replica
	// EmailRetry is the email handler's retry policy: a failing SMTP server
	// is retried with it, then the email is poisoned.
	EmailRetry   middleware.RetryPolicy
	QuoteTimeout time.Duration // how long GET /quote waits for its answer
	NoPricing    bool          // do not run the pricing handler (GET /quote then answers 503)
	// StatusTTL is how long a job's status is kept after its last change.
	StatusTTL time.Duration

	// pricingHook, when set, runs in the pricing handler before it answers
	// (tests: a slow or failing pricing service); importHook in the import
	// handler before it imports a row (tests: rows held in flight).
	pricingHook func(ctx context.Context, q QuoteRequest) error
	importHook  func(ctx context.Context, row ImportRow) error

	Log io.Writer // one line per job handled; nil for none
}

// defaultConfig is run's configuration without flags.
func defaultConfig() config {
	return config{
		Stream:        nats.DefaultStreamName,
		Prefix:        nats.DefaultSubjectPrefix,
		Bucket:        "HERALD_JOBS",
		BucketTTL:     24 * time.Hour,
		MaxUpload:     10 << 20,
		MaxImport:     4 << 20,
		ImportWorkers: 4,
		ThumbWorkers:  2,
		EmailRetry: middleware.RetryPolicy{
			MaxAttempts:        5,
			ImmediateAttempts:  1,
			RedeliveryDelay:    time.Second,
			MaxRedeliveryDelay: 10 * time.Second,
		},
		QuoteTimeout: 2 * time.Second,
		StatusTTL:    24 * time.Hour,
	}
}

// app is the service: its bus, its handlers, its blob store and the SMTP
// server it sends to. newApp starts it; Handler serves its HTTP API; Close
// stops it.
type app struct {
	cfg   config
	bus   *bus.Bus
	store blobStore
	mail  *mailbox
	nc    *natsgo.Conn // nil on memory
	say   func(format string, args ...any)
}

// newApp starts the SMTP server, the transport (memory, or NATS at
// cfg.NATSURL), the blob store and the bus with the job handlers.
func newApp(ctx context.Context, cfg config) (_ *app, err error) {
	a := &app{cfg: cfg, say: newSay(cfg.Log)}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.Close(context.WithoutCancel(ctx)))
		}
	}()
	if a.mail, err = startMailbox(); err != nil {
		return nil, fmt.Errorf("smtp server: %w", err)
	}
	opts := []bus.Option{bus.WithTracking(cfg.StatusTTL)}
	if cfg.NATSURL == "" {
		a.store = newMemStore()
	} else {
		if a.nc, err = natsgo.Connect(cfg.NATSURL, natsgo.Name("herald examples/jobs"), natsgo.MaxReconnects(-1)); err != nil {
			return nil, fmt.Errorf("nats: %w", err)
		}
		js, err := jetstream.New(a.nc)
		if err != nil {
			return nil, err
		}
		if a.store, err = newKVStore(ctx, js, cfg.Bucket, cfg.BucketTTL); err != nil {
			return nil, err
		}
		t, err := nats.New(nats.Config{Conn: a.nc, StreamName: cfg.Stream, SubjectPrefix: cfg.Prefix})
		if err != nil {
			return nil, err
		}
		opts = append(opts, bus.WithTransport(t))
		defer func() {
			if a.bus == nil { // the bus never owned t
				_ = t.Close()
			}
		}()
	}
	b, err := bus.New(opts...)
	if err != nil {
		return nil, err
	}
	a.bus = b
	if err := a.subscribe(); err != nil {
		return nil, err
	}
	if err := b.Start(ctx); err != nil {
		return nil, err
	}
	return a, nil
}

// subscribe registers the job handlers.
func (a *app) subscribe() error {
	if _, err := bus.Subscribe(a.bus, emailHandler, func(ctx context.Context, e EmailRequested) error {
		m, _ := handlers.FromContext(ctx)
		id := m.ID
		msg, err := compose(id, e, time.Now())
		if err != nil {
			return bus.Permanent(err)
		}
		if err := sendMail(ctx, a.mail.Addr(), e.To, msg); err != nil {
			a.say("%s: attempt %d of %d failed: %v", id, m.Attempt, a.cfg.EmailRetry.MaxAttempts, err)
			return err
		}
		a.say("%s: sent to %s", id, e.To)
		return nil
	}, bus.WithRetry(a.cfg.EmailRetry)); err != nil {
		return err
	}
	if _, err := bus.Subscribe(a.bus, thumbHandler, func(ctx context.Context, e ThumbnailRequested) error {
		id := eventID(ctx)
		format, err := makeThumbnail(ctx, a.store, id, e)
		if err != nil {
			return err
		}
		if format != "" { // "": made by an earlier delivery
			a.say("%s: %s thumbnail stored", id, format)
		}
		return nil
	}, bus.WithConcurrency(a.cfg.ThumbWorkers)); err != nil {
		return err
	}
	if _, err := bus.Subscribe(a.bus, importHandler, func(ctx context.Context, e ImportRow) error {
		if a.cfg.importHook != nil {
			if err := a.cfg.importHook(ctx, e); err != nil {
				return err
			}
		}
		c, err := e.check()
		if err != nil {
			a.say("%s: row %d poisoned: %v", e.Import, e.Row, err)
			return bus.Permanent(err)
		}
		return importContact(ctx, a.store, c)
	}, bus.WithConcurrency(a.cfg.ImportWorkers)); err != nil {
		return err
	}
	if a.cfg.NoPricing {
		return nil
	}
	_, err := bus.Handle(a.bus, quoteHandler, func(ctx context.Context, q QuoteRequest) (Quote, error) {
		if a.cfg.pricingHook != nil {
			if err := a.cfg.pricingHook(ctx, q); err != nil {
				return Quote{}, err
			}
		}
		return price(ctx, q)
	}, bus.WithConcurrency(4))
	return err
}

// Close stops the bus (on memory it first handles every job already
// accepted), then the SMTP server and the NATS connection.
func (a *app) Close(ctx context.Context) error {
	var err error
	if a.bus != nil {
		err = a.bus.Close(ctx)
	}
	if a.mail != nil {
		a.mail.Close()
	}
	if a.nc != nil {
		a.nc.Close()
	}
	return err
}

// eventID returns the ID of the event a handler is handling: its job ID.
func eventID(ctx context.Context) string {
	m, _ := handlers.FromContext(ctx)
	return m.ID
}

// newJobID returns a new job ID: the kind, then 128 random bits in base32
// (crypto/rand), unguessable, so that a status URL is as private as a
// capability.
func newJobID(kind string) string { return kind + "-" + strings.ToLower(rand.Text()) }

// jobKind returns the kind of a job ID ("email", "image", "import"), or "".
func jobKind(id string) string {
	kind, rest, ok := strings.Cut(id, "-")
	if !ok || rest == "" {
		return ""
	}
	switch kind {
	case "email", "image", "import":
		return kind
	}
	return ""
}

// newSay returns a printf to out that is safe for concurrent use; nil out
// prints nothing.
func newSay(out io.Writer) func(format string, args ...any) {
	if out == nil {
		return func(string, ...any) {}
	}
	var mu sync.Mutex
	return func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(out, format+"\n", args...)
	}
}
