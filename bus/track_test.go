package bus_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/middleware"
)

type jobStarted struct{ N int }

func TestTrackingOptionAndErrors(t *testing.T) {
	for _, ttl := range []time.Duration{0, -time.Second, bus.MaxTrackingTTL + 1} {
		if _, err := bus.New(bus.WithTracking(ttl)); !errors.Is(err, bus.ErrInvalidOption) {
			t.Errorf("ttl %v: %v", ttl, err)
		}
	}
	ctx := context.Background()
	if _, err := bustest.New(t).Track(ctx, "x"); !errors.Is(err, bus.ErrNoTracking) {
		t.Errorf("tracking off: %v", err)
	}
	b := bustest.New(t, bus.WithTracking(time.Minute))
	if _, err := b.Track(ctx, "never"); !errors.Is(err, bus.ErrUnknownEvent) {
		t.Errorf("unknown: %v", err)
	}
}

// trackState waits until Track reports handler's delivery of id in state
// at attempt, and returns it.
func trackState(t *testing.T, b *bus.Bus, id string, state bus.DeliveryState, attempt int) bus.Delivery {
	t.Helper()
	var d bus.Delivery
	bustest.Eventually(t, 10*time.Second, func() bool {
		tr, err := b.Track(context.Background(), id)
		if err != nil || len(tr.Handlers) != 1 {
			return false
		}
		d = tr.Handlers[0]
		return d.State == state && d.Attempt == attempt
	}, "%s: %v at attempt %d", id, state, attempt)
	return d
}

// A delivery goes queued → running → retrying → running → done, each state
// seen by Track while the test holds the delivery in it.
func TestTrackFollowsADelivery(t *testing.T) {
	steps := make(chan string)
	proceed := make(chan struct{})
	b := bustest.New(t, bus.WithTracking(time.Minute), bus.WithMiddleware(holdFailures(steps, proceed)))
	policy := middleware.RetryPolicy{MaxAttempts: 3, ImmediateAttempts: 1, RedeliveryDelay: time.Millisecond}
	if _, err := bus.Subscribe(b, "worker", func(ctx context.Context, e jobStarted) error {
		meta, _ := handlers.FromContext(ctx)
		steps <- meta.ID
		<-proceed
		if e.N == 1 && meta.Attempt == 1 {
			return errors.New("flaky")
		}
		return nil
	}, bus.WithRetry(policy)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// job-0 holds the worker: job-1 stays queued meanwhile.
	for i, id := range []string{"job-0", "job-1"} {
		if err := bus.Publish(ctx, b, jobStarted{N: i}, bus.WithMessageID(id)); err != nil {
			t.Fatal(err)
		}
	}
	if id := <-steps; id != "job-0" {
		t.Fatal(id)
	}
	q := trackState(t, b, "job-1", bus.StateQueued, 0)
	if q.Handler != "worker" || q.Event != "bus_test.jobStarted" || q.Queued.IsZero() || !q.Started.IsZero() {
		t.Fatalf("queued: %+v", q)
	}
	proceed <- struct{}{} // job-0 done
	if id := <-steps; id != "job-1" {
		t.Fatal(id)
	}
	r := trackState(t, b, "job-1", bus.StateRunning, 1)
	if r.Started.IsZero() || r.Queued.After(r.Started) {
		t.Fatalf("running: %+v", r)
	}
	proceed <- struct{}{} // attempt 1 fails; holdFailures holds it
	if step := <-steps; step != "failed" {
		t.Fatal(step)
	}
	if d := trackState(t, b, "job-1", bus.StateRetrying, 1); d.LastError != "flaky" {
		t.Fatalf("retrying: %+v", d)
	}
	proceed <- struct{}{} // nacked, redelivered
	if id := <-steps; id != "job-1" {
		t.Fatal(id)
	}
	trackState(t, b, "job-1", bus.StateRunning, 2)
	proceed <- struct{}{}
	d := trackState(t, b, "job-1", bus.StateDone, 2)
	if d.LastError != "flaky" || d.Finished.Before(d.Started) || !d.Started.Equal(r.Started) {
		t.Fatalf("done: %+v (first started %v)", d, r.Started)
	}
	tr, err := b.Track(ctx, "job-1")
	if err != nil || !tr.Finished() || tr.EventID != "job-1" {
		t.Fatalf("%+v, %v", tr, err)
	}
}

// holdFailures holds a failed delivery, after its records were written and
// before the bus nacks it, until proceed.
func holdFailures(steps chan<- string, proceed <-chan struct{}) message.HandlerMiddleware {
	return func(h message.HandlerFunc) message.HandlerFunc {
		return func(msg *message.Message) ([]*message.Message, error) {
			out, err := h(msg)
			if err != nil {
				steps <- "failed"
				<-proceed
			}
			return out, err
		}
	}
}

// A permanent failure ends poisoned, with its attempt and error.
func TestTrackPoisoned(t *testing.T) {
	b := bustest.New(t, bus.WithTracking(time.Minute))
	if _, err := bus.Subscribe(b, "strict", func(ctx context.Context, e jobStarted) error {
		return bus.Permanent(errors.New("invalid job"))
	}); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(context.Background(), b, jobStarted{}, bus.WithMessageID("bad")); err != nil {
		t.Fatal(err)
	}
	d := trackState(t, b, "bad", bus.StatePoisoned, 1)
	if d.LastError != "invalid job" || d.Finished.IsZero() {
		t.Fatalf("%+v", d)
	}
}

// Records expire: Track forgets an event once the ttl has passed.
func TestTrackRecordsExpire(t *testing.T) {
	b := bustest.New(t, bus.WithTracking(50*time.Millisecond))
	rec := bustest.Record[jobStarted](t, b, "w")
	if err := bus.Publish(context.Background(), b, jobStarted{}, bus.WithMessageID("short")); err != nil {
		t.Fatal(err)
	}
	rec.Wait(t, 1, 5*time.Second)
	bustest.Eventually(t, 5*time.Second, func() bool {
		_, err := b.Track(context.Background(), "short")
		return errors.Is(err, bus.ErrUnknownEvent)
	}, "the record expires")
}
