// Package testkit holds the helpers that tests of several Herald packages
// share and that no public test package offers: the wait for poison records
// (the root tests, the conformance suite, the NATS tests, the fault suite),
// the rendering of a span's attempt events (the middleware and NATS tracing
// tests), the checks of a closed transport (the NATS and RabbitMQ tests), and
// a recorder that fails until a flag is set.
package testkit

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

// WaitPoison waits up to timeout until b lists at least n poison records of
// handler (of every handler when handler is ""), and returns them; a List
// that fails counts as none yet. It fails t when the deadline passes first.
func WaitPoison(t testing.TB, b *bus.Bus, handler string, n int, timeout time.Duration) []transport.PoisonRecord {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var recs []transport.PoisonRecord
	bustest.Eventually(t, timeout, func() bool {
		var err error
		recs, err = b.Poison().List(ctx, handler)
		return err == nil && len(recs) >= n
	}, "%d poison records of %q", n, handler)
	return recs
}

// FailUntil returns a recorder of E events whose handler fails with err
// until fixed is true; the events it gets after that are recorded.
func FailUntil[E any](fixed *atomic.Bool, err error) *bustest.Recorder[E] {
	return &bustest.Recorder[E]{Fail: func(context.Context, E) error {
		if fixed.Load() {
			return nil
		}
		return err
	}}
}

// AttemptEvents renders the "attempt" events of a process span (see
// middleware.Tracing), in order, as "n:outcome" or "n:outcome:error.type",
// separated by spaces.
func AttemptEvents(s sdktrace.ReadOnlySpan) string {
	var out []string
	for _, e := range s.Events() {
		if e.Name != "attempt" {
			continue
		}
		var n, oc, et string
		for _, a := range e.Attributes {
			switch a.Key {
			case middleware.AttrAttempt:
				n = a.Value.String()
			case middleware.AttrOutcome:
				oc = a.Value.String()
			case middleware.AttrErrorType:
				et = ":" + a.Value.String()
			}
		}
		out = append(out, n+":"+oc+et)
	}
	return strings.Join(out, " ")
}

// RefusesWhenClosed checks that tr, once closed, refuses with an error
// wrapping [transport.ErrClosed] a publish on topic, a Subscriber and, if it
// keeps poison records, ListPoison.
func RefusesWhenClosed(t testing.TB, tr transport.Transport, topic string) {
	t.Helper()
	if err := tr.Publisher().Publish(topic, message.NewMessage(event.NewID(), []byte("{}"))); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("publish after Close: %v", err)
	}
	if _, err := tr.Subscriber("h"); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("Subscriber after Close: %v", err)
	}
	if ps, ok := tr.(transport.PoisonStore); ok {
		if _, _, err := ps.ListPoison(context.Background(), transport.PoisonQuery{}); !errors.Is(err, transport.ErrClosed) {
			t.Errorf("ListPoison after Close: %v", err)
		}
	}
}
