package nats_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/transport"
)

// awaitCtx is a context that reports the first time its Done is asked for:
// the publisher asks for it to wait for the PubAck, right after sending.
type awaitCtx struct {
	context.Context
	once    sync.Once
	waiting chan struct{}
}

func (c *awaitCtx) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// Closing a transport right after its first publish was sent (the PubAck
// still awaited) leaves no goroutine behind, on a connection the transport
// dialled and on one the caller owns (which stays open). nats.go v1.55's
// async publisher starts a goroutine at the first async publish that reads
// its status channel when it first runs; CleanupPublisher, called at close
// before that, strands it on a nil channel forever. Many transports, each
// closed at once, give the race its chances.
func TestCloseRightAfterFirstPublish(t *testing.T) {
	srv := natstest.New(t)
	// The streams before the goroutine snapshots (the server runs some per
	// stream).
	setup := broker{url: srv.URL()}.transport(t)
	if err := setup.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	_ = setup.Close()
	const n = 150
	run := func(t *testing.T, newTransport func() (*nats.Transport, error)) {
		begin := time.Now()
		var errs []error
		for i := range n {
			tr, err := newTransport()
			if err != nil {
				t.Fatal(err)
			}
			// The streams first, so that the publish is sent at once.
			if err := tr.Start(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			actx := &awaitCtx{Context: ctx, waiting: make(chan struct{})}
			msg := message.NewMessage(fmt.Sprintf("leak-%d", i), []byte("{}"))
			msg.SetContext(actx)
			done := make(chan error, 1)
			go func() { done <- tr.Publisher().Publish("leak.Event", msg) }()
			select {
			case <-actx.waiting:
			case err := <-done: // failed before sending
				done <- err
			}
			if err := tr.Close(); err != nil {
				errs = append(errs, err)
			}
			if err := <-done; err != nil && !errors.Is(err, transport.ErrClosed) {
				errs = append(errs, err)
			}
			cancel()
		}
		if len(errs) > 0 {
			t.Errorf("%d errors of %d publishes, the first: %v", len(errs), n, errs[0])
		}
		t.Logf("%d transports in %v", n, time.Since(begin))
	}

	t.Run("own connection", func(t *testing.T) {
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		run(t, func() (*nats.Transport, error) { return nats.New(nats.Config{URL: srv.URL()}) })
	})
	t.Run("caller's connection", func(t *testing.T) {
		nc, err := natsgo.Connect(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		// nats.go's request multiplexer: one subscription per connection,
		// made by its first request and kept while it is open.
		if _, err := nc.Request("$JS.API.INFO", nil, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		// Checked while the caller's connection is still open: nothing of
		// the transports may wait for it to close.
		defer goleak.VerifyNone(t, goleak.IgnoreCurrent())
		run(t, func() (*nats.Transport, error) { return nats.New(nats.Config{Conn: nc}) })
		if nc.IsClosed() {
			t.Error("the caller's connection was closed")
		}
	})
}
