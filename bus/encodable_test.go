package bus_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// What works in one process must work across processes: an event that could
// not be encoded, or whose encoding could not be decoded, is refused on every
// transport, with ErrInvalidEvent, at Subscribe or at Publish.

const encWait = 10 * time.Second

func encCtx(t *testing.T) context.Context { return bustest.Context(t, encWait) }

// remoteTransport is a memory transport seen only through the Transport
// interface: the bus cannot take its in-process path, so it encodes every
// event and every handler decodes it, as over NATS.
type remoteTransport struct{ t *memory.Transport }

func (r remoteTransport) Publisher() message.Publisher { return r.t.Publisher() }
func (r remoteTransport) Subscriber(name string) (message.Subscriber, error) {
	return r.t.Subscriber(name)
}
func (r remoteTransport) Close() error { return r.t.Close() }

// transports are the ways a bus can carry an event: in process (typed value),
// in process but encoded and decoded, and through a transport's messages.
var transports = []struct {
	name string
	opts func() []bus.Option
}{
	{"memory", func() []bus.Option { return nil }},
	{"memory-encode-always", func() []bus.Option { return []bus.Option{bus.WithEncodeAlways()} }},
	{"remote", func() []bus.Option { return []bus.Option{bus.WithTransport(remoteTransport{memory.New()})} }},
}

func eachTransport(t *testing.T, fn func(t *testing.T, b *bus.Bus)) {
	for _, tr := range transports {
		t.Run(tr.name, func(t *testing.T) { fn(t, bustest.New(t, tr.opts()...)) })
	}
}

type Measured struct {
	Reading json.Number `json:"reading"`
}

func TestInvalidJSONNumberIsRefusedOnEveryTransport(t *testing.T) {
	eachTransport(t, func(t *testing.T, b *bus.Bus) {
		typed := bustest.Record[Measured](t, b, "typed")
		decoded := bustest.Record[Measured](t, b, "decoded", bus.WithDecode())
		for _, bad := range []json.Number{"not-a-number", "1e", "01", "+1", "NaN", " 1"} {
			if err := bus.Publish(encCtx(t), b, Measured{Reading: bad}); !errors.Is(err, bus.ErrInvalidEvent) {
				t.Errorf("Publish of json.Number %q: %v, want ErrInvalidEvent (json.Marshal refuses it)", bad, err)
			}
		}
		for _, good := range []json.Number{"12.5e-3", "-0", "", "123456789012345678901234567890"} {
			if err := bus.Publish(encCtx(t), b, Measured{Reading: good}); err != nil {
				t.Fatalf("Publish of json.Number %q: %v", good, err)
			}
		}
		for _, r := range []*bustest.Recorder[Measured]{typed, decoded} {
			got := r.Wait(t, 4, encWait)
			if got[0].Reading != "12.5e-3" || len(got) != 4 {
				t.Errorf("got %+v", got)
			}
		}
		if recs, _ := b.Poison().List(encCtx(t), ""); len(recs) != 0 {
			t.Errorf("%d poisoned, the first for %v", len(recs), recs[0].Error)
		}
	})
}

// Shape is an interface event type: JSON cannot decode into it.
type Shape interface{ Area() float64 }

type Circle struct{ R float64 }

func (c Circle) Area() float64 { return 3 * c.R * c.R }

type Drawn struct {
	Shape fmt.Stringer
}

type Failed struct {
	ID  string
	Err error
}

type Layers struct {
	Shapes []Shape
}

type ByName struct {
	Shapes map[string]*Shape
}

func TestInterfaceEventsAreRefusedOnEveryTransport(t *testing.T) {
	eachTransport(t, func(t *testing.T, b *bus.Bus) {
		ctx := encCtx(t)
		noop := func(context.Context, Shape) error { return nil }
		if _, err := bus.Subscribe(b, "shapes", noop); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("Subscribe to an interface type: %v, want ErrInvalidEvent", err)
		}
		if err := bus.Publish[Shape](ctx, b, Circle{R: 1}); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("Publish of an interface type: %v, want ErrInvalidEvent", err)
		}
		refused := func(name string, sub func() error, pub func() error) {
			if err := sub(); !errors.Is(err, bus.ErrInvalidEvent) {
				t.Errorf("Subscribe to %s: %v, want ErrInvalidEvent", name, err)
			}
			if err := pub(); !errors.Is(err, bus.ErrInvalidEvent) {
				t.Errorf("Publish of %s: %v, want ErrInvalidEvent", name, err)
			}
		}
		refused("a fmt.Stringer field", func() error {
			_, err := bus.Subscribe(b, "drawn", func(context.Context, Drawn) error { return nil })
			return err
		}, func() error { return bus.Publish(ctx, b, Drawn{Shape: time.Second}) })
		refused("an error field", func() error {
			_, err := bus.Subscribe(b, "failed", func(context.Context, Failed) error { return nil })
			return err
		}, func() error { return bus.Publish(ctx, b, Failed{ID: "x"}) })
		refused("a slice of interfaces", func() error {
			_, err := bus.Subscribe(b, "layers", func(context.Context, Layers) error { return nil })
			return err
		}, func() error { return bus.Publish(ctx, b, Layers{}) })
		refused("a map of pointers to interfaces", func() error {
			_, err := bus.Subscribe(b, "by-name", func(context.Context, *ByName) error { return nil })
			return err
		}, func() error { return bus.Publish(ctx, b, &ByName{}) })
	})
}

type Envelope struct {
	Kind    string         `json:"kind"`
	Payload any            `json:"payload"`
	Attrs   map[string]any `json:"attrs"`
}

// An empty interface field is accepted: it crosses as a generic JSON value
// (map[string]any, []any, float64, string, bool, nil), which is what a
// decoding handler receives; an in-process handler receives the value itself.
func TestEmptyInterfaceFieldsCrossAsGenericJSON(t *testing.T) {
	eachTransport(t, func(t *testing.T, b *bus.Bus) {
		decoded := bustest.Record[Envelope](t, b, "decoded", bus.WithDecode())
		in := Envelope{Kind: "circle", Payload: Circle{R: 2}, Attrs: map[string]any{"n": 1, "tags": []string{"a"}}}
		if err := bus.Publish(encCtx(t), b, in); err != nil {
			t.Fatal(err)
		}
		got := decoded.Wait(t, 1, encWait)[0]
		if m, ok := got.Payload.(map[string]any); !ok || m["R"] != 2.0 || got.Attrs["n"] != 1.0 {
			t.Errorf("decoded %#v", got)
		}
		if err := bus.Publish(encCtx(t), b, Envelope{Payload: make(chan int)}); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("a chan in an any field: %v, want ErrInvalidEvent", err)
		}
	})
}

// Link is a linked list: each node one level of JSON nesting deeper.
type Link struct {
	N    int   `json:"n"`
	Next *Link `json:"next,omitempty"`
}

func chain(n int) *Link {
	var head *Link
	for i := range n {
		head = &Link{N: n - i, Next: head}
	}
	return head
}

// encoding/json decodes nothing nested deeper than 10000 levels; the bus
// refuses to publish what it could never decode.
func TestTooDeepEventIsRefusedOnEveryTransport(t *testing.T) {
	const limit = 10000 // encoding/json's maxNestingDepth
	deep, ok := chain(limit+1), chain(limit)
	for _, c := range []struct {
		l      *Link
		decode bool
	}{{deep, false}, {ok, true}} {
		data, err := json.Marshal(c.l)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, new(Link)); (err == nil) != c.decode {
			t.Fatalf("this Go's encoding/json decodes %d levels: %v", strings.Count(string(data), "{"), err)
		}
	}
	eachTransport(t, func(t *testing.T, b *bus.Bus) {
		typed := bustest.Record[Link](t, b, "typed")
		decoded := bustest.Record[Link](t, b, "decoded", bus.WithDecode())
		if err := bus.Publish(encCtx(t), b, deep); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("Publish of %d levels: %v, want ErrInvalidEvent", limit+1, err)
		}
		if err := bus.Publish(encCtx(t), b, *deep); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("Publish of %d levels (by value): %v, want ErrInvalidEvent", limit+1, err)
		}
		if err := bus.Publish(encCtx(t), b, ok); err != nil {
			t.Fatalf("Publish of %d levels: %v", limit, err)
		}
		for _, r := range []*bustest.Recorder[Link]{typed, decoded} {
			if got := r.Wait(t, 1, encWait); got[0].N != 1 || got[0].Next == nil {
				t.Errorf("got %+v", got[0])
			}
		}
		if recs, _ := b.Poison().List(encCtx(t), ""); len(recs) != 0 {
			t.Errorf("%d poisoned, the first for %v", len(recs), recs[0].Error)
		}
	})
}

func TestNilPointerEventIsRefusedOnEveryTransport(t *testing.T) {
	eachTransport(t, func(t *testing.T, b *bus.Bus) {
		r := bustest.Record[Measured](t, b, "measured")
		if err := bus.Publish[*Measured](encCtx(t), b, nil); !errors.Is(err, bus.ErrInvalidEvent) {
			t.Errorf("Publish of a nil *E: %v, want ErrInvalidEvent", err)
		}
		err := bus.PublishBatch(encCtx(t), b, []*Measured{{Reading: "1"}, nil})
		if !errors.Is(err, bus.ErrInvalidEvent) || !strings.Contains(err.Error(), "event 1") {
			t.Errorf("PublishBatch with a nil *E: %v, want ErrInvalidEvent for event 1", err)
		}
		if err := bus.Publish(encCtx(t), b, &Measured{Reading: "2"}); err != nil {
			t.Fatal(err)
		}
		// The batch's first event may have been published, before "2" (the
		// handler takes events in publish order); the nil one never is.
		bustest.Eventually(t, encWait, func() bool {
			ev := r.Events()
			return len(ev) > 0 && ev[len(ev)-1].Reading == "2"
		}, "the event published after the nil one")
		for _, e := range r.Events() {
			if e.Reading == "" {
				t.Errorf("a zero event was delivered: %+v", r.Events())
			}
		}
	})
}
