package middleware_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/middleware"
)

// redelivered is a delivery the transport reports as its n-th.
func redelivered(n int) *message.Message {
	msg := delivery(context.Background())
	event.MessageMetadata(msg).Attempt = n
	event.SetDeliveries(msg, n)
	return msg
}

// staged is a two-stage policy whose waits are long enough to notice.
var staged = middleware.RetryPolicy{MaxAttempts: 5, ImmediateAttempts: 3, InitialInterval: time.Millisecond,
	MaxInterval: time.Millisecond, RedeliveryDelay: time.Second, MaxRedeliveryDelay: 3 * time.Second}

func TestRetryTwoStages(t *testing.T) {
	type want struct {
		calls    int
		attempts []int         // Attempt seen by each call
		delay    time.Duration // of the RedeliveryError; 0: a RetryError (poison)
		made     int           // Attempts of the error
	}
	for _, tc := range []struct {
		name       string
		deliveries int
		want       want
	}{
		{"first delivery runs the immediate attempts", 1, want{3, []int{1, 2, 3}, time.Second, 3}},
		{"second delivery is one attempt, delay doubled", 2, want{1, []int{4}, 2 * time.Second, 4}},
		{"last attempt poisons", 3, want{1, []int{5}, 0, 5}},
		{"a delivery past the budget still tries once, then poisons", 9, want{1, []int{11}, 0, 11}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var seen []int
			h := middleware.Retry(staged, nil)(func(msg *message.Message) ([]*message.Message, error) {
				seen = append(seen, event.MessageMetadata(msg).Attempt)
				return nil, errors.New("down")
			})
			_, err := h(redelivered(tc.deliveries))
			if len(seen) != tc.want.calls || len(seen) != len(tc.want.attempts) {
				t.Fatalf("attempts seen %v, want %v", seen, tc.want.attempts)
			}
			for i := range seen {
				if seen[i] != tc.want.attempts[i] {
					t.Errorf("attempts seen %v, want %v", seen, tc.want.attempts)
				}
			}
			var re *middleware.RedeliveryError
			var fe *middleware.RetryError
			switch {
			case tc.want.delay > 0:
				if !errors.As(err, &re) || re.Delay != tc.want.delay || re.Attempts != tc.want.made ||
					!middleware.IsDeferred(err) || re.Err.Error() != "down" {
					t.Errorf("err %v (%+v), want a redelivery in %v after %d attempts", err, re, tc.want.delay, tc.want.made)
				}
			default:
				if !errors.As(err, &fe) || fe.Attempts != tc.want.made || middleware.IsDeferred(err) {
					t.Errorf("err %v, want a RetryError after %d attempts", err, tc.want.made)
				}
			}
		})
	}
}

func TestRetryRedeliveryDelayCapped(t *testing.T) {
	p := staged
	p.MaxAttempts = 100
	h := middleware.Retry(p, nil)(func(*message.Message) ([]*message.Message, error) { return nil, errors.New("down") })
	_, err := h(redelivered(10))
	var re *middleware.RedeliveryError
	if !errors.As(err, &re) || re.Delay != 3*time.Second {
		t.Fatalf("err %v, want a redelivery capped at 3s", err)
	}
}

// Immediate attempts run back to back: the worker never sleeps before the
// delayed stage, whatever InitialInterval says (it spaces in-process-only
// retries). When every retry runs in process, the first waits
// InitialInterval.
func TestRetryWaits(t *testing.T) {
	for _, tc := range []struct {
		name       string
		p          middleware.RetryPolicy
		deliveries int
		slow       bool
	}{
		{"immediate attempts back to back", middleware.RetryPolicy{MaxAttempts: 5, ImmediateAttempts: 3, InitialInterval: time.Hour}, 1, false},
		{"in process only: spaced", middleware.RetryPolicy{MaxAttempts: 3, InitialInterval: 300 * time.Millisecond, Jitter: -1}, 1, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			calls := 0
			h := middleware.Retry(tc.p, nil)(func(*message.Message) ([]*message.Message, error) {
				if calls++; calls < 3 {
					return nil, errors.New("transient")
				}
				return nil, nil
			})
			begin := time.Now()
			if _, err := h(redelivered(tc.deliveries)); err != nil || calls != 3 {
				t.Fatalf("err %v after %d calls", err, calls)
			}
			d := time.Since(begin)
			if !tc.slow && d > 10*time.Second {
				t.Errorf("immediate retries waited %v", d)
			}
			if tc.slow && d < 900*time.Millisecond { // 300ms, then 600ms
				t.Errorf("in-process retries took %v, want the waits of the policy (900ms)", d)
			}
		})
	}
}

func TestRetryInProcessWithoutDeliveryCount(t *testing.T) {
	// A delivery whose count the transport did not report (0), and a policy
	// made in process (ordering by key): every attempt in this delivery.
	for name, tc := range map[string]struct {
		p          middleware.RetryPolicy
		deliveries int
	}{
		"no count":   {staged, 0},
		"in process": {staged.InProcess(), 1},
	} {
		t.Run(name, func(t *testing.T) {
			calls := 0
			h := middleware.Retry(tc.p, nil)(func(*message.Message) ([]*message.Message, error) {
				calls++
				return nil, errors.New("down")
			})
			_, err := h(redelivered(tc.deliveries))
			var fe *middleware.RetryError
			if !errors.As(err, &fe) || calls != 5 || fe.Attempts != 5 {
				t.Errorf("err %v after %d calls, want a RetryError after 5", err, calls)
			}
		})
	}
}
