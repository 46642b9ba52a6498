package event_test

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

type Plain struct{ A int }
type Named struct{}

func (Named) EventName() string { return "custom.name" }

type PtrNamed struct{}

func (*PtrNamed) EventName() string { return "ptr.name" }

type Generic[T any] struct{ V T }

func TestNameOf(t *testing.T) {
	cases := []struct {
		got     func() (string, error)
		want    string
		wantErr bool
	}{
		{event.NameOf[Plain], "event_test.Plain", false},
		{event.NameOf[*Plain], "event_test.Plain", false},
		{event.NameOf[Named], "custom.name", false},
		{event.NameOf[PtrNamed], "ptr.name", false},
		{event.NameOf[*PtrNamed], "ptr.name", false},
		{event.NameOf[Generic[int]], "", true},
		{event.NameOf[struct{}], "", true},
		{event.NameOf[int], "", true}, // "int" has no package: refused as it says nothing
	}
	for i, c := range cases {
		got, err := c.got()
		if c.wantErr {
			if !errors.Is(err, transport.ErrInvalidName) {
				t.Errorf("%d: got %q, %v; want ErrInvalidName", i, got, err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("%d: got %q, %v; want %q", i, got, err, c.want)
		}
	}
}

func TestValidateName(t *testing.T) {
	for _, ok := range []string{"a", "a.b", "billing.charge-card", "Orders.V1.placed_x"} {
		if err := transport.ValidName(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", ".", "a.", ".a", "a..b", "a b", "a*", ">", "a.>", "a\nb", "\x00", strings.Repeat("a", 256)} {
		if err := transport.ValidName(bad); !errors.Is(err, transport.ErrInvalidName) {
			t.Errorf("%q: %v, want ErrInvalidName", bad, err)
		}
	}
}

type Rich struct {
	S      string             `json:"s"`
	N      int64              `json:"n,string"`
	F      float64            `json:"f"`
	B      []byte             `json:"b"`
	T      time.Time          `json:"t"`
	P      *Plain             `json:"p"`
	L      []Plain            `json:"l"`
	A      [2]string          `json:"a"`
	Hidden string             `json:"-"`
	Inner  struct{ X, Y int } `json:"inner"`
	low    int                // unexported: not encoded
}

type Opaque struct {
	M map[string]int
}

type WithIface struct{ V any }

type Node struct {
	Next *Node
}

type Bad struct{ C chan int }

func TestPlanJSONBoundsTheEncoding(t *testing.T) {
	plan, err := event.PlanJSON(reflect.TypeFor[Rich]())
	if err != nil {
		t.Fatal(err)
	}
	values := []Rich{
		{},
		{S: "plain", N: -1 << 62, F: -1.5e300, B: []byte("bytes"), T: time.Now(), P: &Plain{A: 9}, L: []Plain{{1}, {2}}, A: [2]string{"x", "y"}, low: 5},
		{S: strings.Repeat("\"<>&\x01é\u2028", 50), B: make([]byte, 1000), L: make([]Plain, 100)},
	}
	for i, v := range values {
		bound, ok := plan.Bound(v)
		enc, err := json.Marshal(v)
		if err != nil || !ok {
			t.Fatalf("%d: ok %v, err %v", i, ok, err)
		}
		if bound < len(enc) {
			t.Errorf("%d: bound %d < encoded size %d", i, bound, len(enc))
		}
	}
	if _, ok := plan.Bound(Rich{F: math.NaN()}); ok {
		t.Error("NaN: bound claims the value encodes")
	}
	if _, ok := plan.Bound(Rich{T: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC)}); ok {
		t.Error("year 10000: bound claims the value encodes")
	}
	for _, typ := range []reflect.Type{reflect.TypeFor[Opaque](), reflect.TypeFor[WithIface](), reflect.TypeFor[Node]()} {
		p, err := event.PlanJSON(typ)
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if _, ok := p.Bound(reflect.Zero(typ).Interface()); ok {
			t.Errorf("%v: a bound without encoding is not provable", typ)
		}
	}
	if _, err := event.PlanJSON(reflect.TypeFor[Bad]()); !errors.Is(err, transport.ErrInvalidEvent) {
		t.Errorf("chan field: %v", err)
	}
}

func FuzzPlanBound(f *testing.F) {
	f.Add("hello", int64(3), 1.5, []byte("x"))
	f.Add("\u2028\"\\", int64(-9), math.Inf(1), []byte{})
	plan, err := event.PlanJSON(reflect.TypeFor[Rich]())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, s string, n int64, fl float64, b []byte) {
		v := Rich{S: s, N: n, F: fl, B: b, L: []Plain{{int(n)}}, A: [2]string{s, s}}
		bound, ok := plan.Bound(v)
		enc, err := json.Marshal(v)
		if ok && err != nil {
			t.Fatalf("bound says encodable, json says %v", err)
		}
		if ok && bound < len(enc) {
			t.Fatalf("bound %d < size %d", bound, len(enc))
		}
		checkPlan(t, b) // every type of encodable_test.go, values drawn from b
	})
}

func TestParseMetadata(t *testing.T) {
	md := message.Metadata{transport.KeyID: "id1", transport.KeyEvent: "a.b", transport.KeyCorrelationID: "c",
		transport.KeyCausationID: "k", transport.KeyPublishedAt: "2026-11-23T10:00:00.5Z", transport.KeyOrderingKey: "o"}
	m, err := event.ParseMetadata(md)
	if err != nil || m.ID != "id1" || m.Name != "a.b" || m.CorrelationID != "c" || m.CausationID != "k" ||
		m.OrderingKey != "o" || m.PublishedAt.Nanosecond() != 5e8 {
		t.Errorf("%+v, %v", m, err)
	}
	out := message.Metadata{}
	event.SetMetadata(out, m)
	if back, _ := event.ParseMetadata(out); back != m {
		t.Errorf("round trip: %+v != %+v", back, m)
	}
	var de *handlers.DecodeError
	for _, bad := range []message.Metadata{{}, {transport.KeyID: "x"}, {transport.KeyEvent: "x"},
		{transport.KeyID: "x", transport.KeyEvent: "y", transport.KeyPublishedAt: "yesterday"}} {
		if _, err := event.ParseMetadata(bad); !errors.As(err, &de) {
			t.Errorf("%v: %v, want a *DecodeError", bad, err)
		}
	}
}

func TestNewIDUniqueAndIncreasing(t *testing.T) {
	prev := event.NewID()
	seen := map[string]bool{prev: true}
	for range 10000 {
		id := event.NewID()
		if seen[id] || id <= prev || len(id) != 28 {
			t.Fatalf("id %q after %q", id, prev)
		}
		seen[id] = true
		prev = id
	}
}

var idSink string

func TestNewIDAllocatesOnce(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() { idSink = event.NewID() }); n != 1 {
		t.Errorf("NewID allocates %v times", n)
	}
}

func TestHandlerInProcessAndDecoded(t *testing.T) {
	var got []Plain
	fn := func(ctx context.Context, e Plain) error {
		m, ok := handlers.FromContext(ctx)
		if !ok || m.Handler != "h" || m.Attempt != 1 {
			t.Errorf("metadata %+v %v", m, ok)
		}
		got = append(got, e)
		return nil
	}
	h := event.New("handlers_test.Plain", fn, handlers.JSON{}, false)
	meta := handlers.Metadata{Event: transport.Event{ID: "1", Name: "handlers_test.Plain"}, Handler: "h", Attempt: 1}
	msg := event.NewMessage(context.Background(), meta, Plain{A: 7}, nil, nil, handlers.JSON{})
	if _, err := h(msg); err != nil {
		t.Fatal(err)
	}
	// Poison needs the payload of an in-process event: encoded on demand.
	if p, err := event.Payload(msg); err != nil || string(p) != `{"A":7}` {
		t.Errorf("payload %q %v", p, err)
	}
	dec := event.New("handlers_test.Plain", fn, handlers.JSON{}, true)
	msg2 := event.NewMessage(context.Background(), meta, Plain{A: 8}, nil, nil, handlers.JSON{})
	if _, err := dec(msg2); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].A != 7 || got[1].A != 8 {
		t.Errorf("got %v", got)
	}
}

func TestHandlerPanicBecomesPanicError(t *testing.T) {
	h := event.New("handlers_test.Plain", func(context.Context, Plain) error { panic("boom") }, handlers.JSON{}, false)
	msg := event.NewMessage(context.Background(), handlers.Metadata{Event: transport.Event{ID: "1", Name: "handlers_test.Plain"}}, Plain{}, nil, nil, nil)
	_, err := h(msg)
	var pe *handlers.PanicError
	if !errors.As(err, &pe) || pe.Value != "boom" || !strings.Contains(pe.Stack, "event_test.go") {
		t.Fatalf("got %v", err)
	}
}

func TestFromContextOutsideAHandler(t *testing.T) {
	if _, ok := handlers.FromContext(context.Background()); ok {
		t.Error("metadata found in a plain context")
	}
	//lint:ignore SA1012 testing the nil case on purpose
	if _, ok := handlers.FromContext(nil); ok {
		t.Error("metadata found in a nil context")
	}
}

func TestDeliveryContextDerivesWithoutGoroutines(t *testing.T) {
	parent, cancel := context.WithCancel(context.Background())
	msg := event.NewMessage(parent, handlers.Metadata{Event: transport.Event{ID: "1"}}, nil, nil, nil, nil)
	child, cancelChild := context.WithTimeout(msg.Context(), time.Hour)
	defer cancelChild()
	cancel()
	select {
	case <-child.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelling the worker context did not reach a context derived in the handler")
	}
	if m, ok := handlers.FromContext(child); !ok || m.ID != "1" {
		t.Error("derived context lost the metadata")
	}
}

func TestDecodeErrorQuotesPayloadSafely(t *testing.T) {
	h := event.New("handlers_test.Plain", func(context.Context, Plain) error { return nil }, handlers.JSON{}, true)
	for _, p := range []string{"\x00\xff bin", "line\nInjected: x\r\n", strings.Repeat("a", 63) + "é tail"} {
		msg := message.NewMessage("x", []byte(p))
		event.SetMetadata(msg.Metadata, transport.Event{ID: "x", Name: "handlers_test.Plain"})
		event.Bind(msg, "h", 1)
		_, err := h(msg)
		if err == nil {
			t.Fatalf("%q decoded", p)
		}
		text := err.Error()
		if strings.ContainsAny(text, "\n\r\x00") || !utf8.ValidString(text) {
			t.Errorf("unsafe error text %q", text)
		}
	}
}

type Tree struct {
	Name string
	Kids []Tree
}

type Ring struct {
	Items [2]*Ring
	M     map[string]Ring
}

func TestPlanJSONRecursiveTypes(t *testing.T) {
	for _, typ := range []reflect.Type{reflect.TypeFor[Tree](), reflect.TypeFor[Ring](), reflect.TypeFor[[]Tree]()} {
		p, err := event.PlanJSON(typ) // must not overflow the stack
		if err != nil {
			t.Fatalf("%v: %v", typ, err)
		}
		if _, ok := p.Bound(reflect.Zero(typ).Interface()); ok {
			t.Errorf("%v: a recursive type's bound cannot be proven without encoding", typ)
		}
	}
}

func TestPlanJSONTimeZoneOffset(t *testing.T) {
	p, _ := event.PlanJSON(reflect.TypeFor[time.Time]())
	odd := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("far", 25*3600))
	if _, err := json.Marshal(odd); err == nil {
		t.Skip("this Go's encoding/json accepts the offset")
	}
	if _, ok := p.Bound(odd); ok {
		t.Error("a zone offset json refuses was proven encodable")
	}
}

// Deliveries of one event share its metadata: a write through one delivery's
// MessageMetadata, SetAttempt or EnsureCorrelationID reaches no other
// delivery and leaves the shared event as it was.
func TestDeliveriesShareTheEventCopyOnWrite(t *testing.T) {
	ev := &event.Shared{Event: transport.Event{ID: "1", Name: "handlers_test.Plain"}, Value: Plain{A: 1}}
	sub := &event.Binding{Parent: context.Background(), Handler: "h", Codec: handlers.JSON{}}
	m1 := event.NewDelivery(sub, ev, 1, 1, nil, nil)
	m2 := event.NewDelivery(sub, ev, 1, 1, nil, nil)

	if id, c := event.EnsureCorrelationID(m1); id != "1" || c != "1" {
		t.Errorf("EnsureCorrelationID = %q, %q", id, c)
	}
	if ev.Event.CorrelationID != "" {
		t.Errorf("the shared event was written: %+v", ev.Event)
	}
	event.MessageMetadata(m1).Attempt = 5
	event.SetAttempt(m1, 6)
	event.SetAttempt(m2, 2)
	m, _ := event.Metadata(m1)
	if m.Attempt != 6 || m.CorrelationID != "1" || m.Handler != "h" || event.Attempt(m1) != 6 {
		t.Errorf("m1's metadata %+v", m)
	}
	m, _ = event.Metadata(m2)
	if m.Attempt != 2 || m.CorrelationID != "" {
		t.Errorf("m2's metadata %+v: m1's writes reached it", m)
	}
	if fm, ok := handlers.FromContext(m1.Context()); !ok || fm.Attempt != 6 || fm.CorrelationID != "1" {
		t.Errorf("FromContext(m1) = %+v", fm)
	}
	if fm, _ := handlers.FromContext(m2.Context()); fm.Attempt != 2 {
		t.Errorf("FromContext(m2) = %+v", fm)
	}
}

// Bound proves a time encodable exactly when json.Marshal encodes it: at the
// edges of years 0 and 9999, in zones east and west of UTC.
func TestPlanJSONTimeYearEdges(t *testing.T) {
	p, _ := event.PlanJSON(reflect.TypeFor[time.Time]())
	for _, zone := range []*time.Location{time.UTC, time.FixedZone("east", 14*3600), time.FixedZone("west", -12*3600)} {
		for _, at := range []time.Time{
			time.Date(0, 1, 1, 0, 0, 0, 0, zone), time.Date(-1, 12, 31, 23, 59, 59, 999999999, zone),
			time.Date(9999, 12, 31, 23, 59, 59, 999999999, zone), time.Date(10000, 1, 1, 0, 0, 0, 0, zone),
		} {
			for _, d := range []time.Duration{-time.Nanosecond, 0, time.Nanosecond, -time.Hour, time.Hour} {
				v := at.Add(d)
				_, ok := p.Bound(v)
				_, err := json.Marshal(v)
				if ok != (err == nil) {
					t.Errorf("%v: Bound says %v, json.Marshal %v", v, ok, err)
				}
			}
		}
	}
}
