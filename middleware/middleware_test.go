package middleware_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware"
	"github.com/heraldbus/herald/transport"
)

func delivery(ctx context.Context) *message.Message {
	meta := handlers.Metadata{Event: transport.Event{ID: "ev-1", Name: "t.Event"}, Handler: "h", Attempt: 1}
	return event.NewMessage(ctx, meta, struct{ A int }{A: 1}, nil, nil, handlers.JSON{})
}

var fast = middleware.RetryPolicy{MaxAttempts: 4, InitialInterval: time.Millisecond, MaxInterval: 2 * time.Millisecond}

func TestRetryAttemptsAndAttemptMetadata(t *testing.T) {
	var attempts []int
	h := middleware.Retry(fast, nil)(func(msg *message.Message) ([]*message.Message, error) {
		attempts = append(attempts, event.MessageMetadata(msg).Attempt)
		if len(attempts) < 3 {
			return nil, errors.New("again")
		}
		return nil, nil
	})
	if _, err := h(delivery(context.Background())); err != nil {
		t.Fatal(err)
	}
	if len(attempts) != 3 || attempts[0] != 1 || attempts[2] != 3 {
		t.Errorf("attempts seen %v", attempts)
	}
}

func TestRetryGivesUpWithRetryError(t *testing.T) {
	calls := 0
	h := middleware.Retry(fast, nil)(func(*message.Message) ([]*message.Message, error) {
		calls++
		return nil, errors.New("down")
	})
	_, err := h(delivery(context.Background()))
	var re *middleware.RetryError
	if !errors.As(err, &re) || re.Attempts != 4 || calls != 4 || re.Err.Error() != "down" {
		t.Fatalf("err %v, calls %d", err, calls)
	}
}

func TestRetrySkipsPermanentAndDecodeErrors(t *testing.T) {
	for _, e := range []error{handlers.Permanent(errors.New("p")), &handlers.DecodeError{Reason: "x"}} {
		calls := 0
		h := middleware.Retry(fast, nil)(func(*message.Message) ([]*message.Message, error) { calls++; return nil, e })
		if _, err := h(delivery(context.Background())); !errors.Is(err, e) || calls != 1 {
			t.Errorf("%v: calls %d, err %v", e, calls, err)
		}
	}
}

func TestRetryStopsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	slow := middleware.RetryPolicy{MaxAttempts: 5, InitialInterval: time.Hour}
	calls := 0
	h := middleware.Retry(slow, nil)(func(*message.Message) ([]*message.Message, error) {
		calls++
		cancel()
		return nil, errors.New("x")
	})
	done := make(chan error)
	go func() { _, err := h(delivery(ctx)); done <- err }()
	select {
	case err := <-done:
		var re *middleware.RetryError
		if err == nil || errors.As(err, &re) || calls != 1 {
			t.Errorf("err %v, calls %d", err, calls)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Retry kept waiting after its context ended")
	}
}

func TestRetryPolicyValidate(t *testing.T) {
	for _, bad := range []middleware.RetryPolicy{{MaxAttempts: -1}, {InitialInterval: -1}, {MaxInterval: -1}, {Multiplier: 0.9}, {Jitter: 1.5},
		{ImmediateAttempts: -1}, {RedeliveryDelay: -1}, {MaxRedeliveryDelay: 25 * time.Hour}} {
		if err := bad.Validate(); !errors.Is(err, middleware.ErrInvalidPolicy) {
			t.Errorf("%+v: %v", bad, err)
		}
	}
	if err := (middleware.RetryPolicy{}).Validate(); err != nil {
		t.Error(err)
	}
	if d := (middleware.RetryPolicy{Jitter: -1}).WithDefaults(); d.Jitter != 0 || d.MaxAttempts != 8 || d.ImmediateAttempts != 3 {
		t.Errorf("%+v", d)
	}
}

type store struct {
	mu   sync.Mutex
	recs []transport.PoisonRecord
	fail error
}

func newStore() *store { return &store{} }

func (s *store) PutPoison(ctx context.Context, r transport.PoisonRecord) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail != nil {
		return s.fail
	}
	s.recs = append(s.recs, r)
	return nil
}
func (s *store) ListPoison(context.Context, transport.PoisonQuery) ([]transport.PoisonRecord, string, error) {
	return s.recs, "", nil
}
func (s *store) GetPoison(context.Context, string) (transport.PoisonRecord, bool, error) {
	return transport.PoisonRecord{}, false, nil
}
func (s *store) DeletePoison(context.Context, string) (bool, error) { return false, nil }

func TestPoisonRecordsAndAcks(t *testing.T) {
	st := newStore()
	h := middleware.Poison(st, nil)(middleware.Retry(fast, nil)(func(*message.Message) ([]*message.Message, error) {
		return nil, errors.New("broken")
	}))
	msg := delivery(context.Background())
	if _, err := h(msg); err != nil {
		t.Fatalf("poisoned delivery must be acked (nil), got %v", err)
	}
	if len(st.recs) != 1 {
		t.Fatalf("%d records", len(st.recs))
	}
	r := st.recs[0]
	if r.Handler != "h" || r.Event.ID != "ev-1" || r.Attempts != 4 || !strings.Contains(r.Error, "broken") ||
		string(r.Payload) != `{"A":1}` || r.Metadata[transport.KeyEvent] != "t.Event" || r.FirstFailure.IsZero() {
		t.Errorf("record %+v", r)
	}
}

func TestPoisonStoreFailureNacks(t *testing.T) {
	st := &store{fail: errors.New("disk full")}
	h := middleware.Poison(st, nil)(func(*message.Message) ([]*message.Message, error) {
		return nil, handlers.Permanent(errors.New("bad"))
	})
	_, err := h(delivery(context.Background()))
	if !errors.Is(err, middleware.ErrPoisonStore) || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "bad") {
		t.Fatalf("got %v", err)
	}
}

func TestPoisonNeverStoresOnShutdown(t *testing.T) {
	st := newStore()
	ctx, cancel := context.WithCancel(context.Background())
	h := middleware.Poison(st, nil)(func(msg *message.Message) ([]*message.Message, error) {
		cancel()
		return nil, context.Canceled
	})
	if _, err := h(delivery(ctx)); err == nil {
		t.Fatal("an interrupted delivery must be nacked (error), not acked")
	}
	if len(st.recs) != 0 {
		t.Errorf("shutdown poisoned %d events", len(st.recs))
	}
}

func TestPoisonKeepsPanicStack(t *testing.T) {
	st := newStore()
	inner := event.New("t.Event", func(context.Context, struct{ A int }) error { panic("kaboom") }, handlers.JSON{}, false)
	h := middleware.Poison(st, nil)(inner)
	if _, err := h(delivery(context.Background())); err != nil {
		t.Fatal(err)
	}
	if len(st.recs) != 1 || !strings.Contains(st.recs[0].Stack, "middleware_test.go") || !strings.Contains(st.recs[0].Error, "kaboom") {
		t.Errorf("records %+v", st.recs)
	}
}

func TestCorrelation(t *testing.T) {
	meta := handlers.Metadata{Event: transport.Event{ID: "foreign-1", Name: "t.Event"}, Handler: "h"}
	msg := event.NewMessage(context.Background(), meta, nil, nil, nil, nil)
	out := message.NewMessage("o", nil)
	h := middleware.Correlation(func(m *message.Message) ([]*message.Message, error) {
		if c := event.MessageMetadata(m).CorrelationID; c != "foreign-1" {
			t.Errorf("a delivery without correlation ID starts its own chain; got %q", c)
		}
		return []*message.Message{out}, nil
	})
	if _, err := h(msg); err != nil {
		t.Fatal(err)
	}
	if out.Metadata.Get(transport.KeyCorrelationID) != "foreign-1" || out.Metadata.Get(transport.KeyCausationID) != "foreign-1" {
		t.Errorf("produced message metadata %v", out.Metadata)
	}
}
