package event_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// Fuzz targets for decoding what arrives from a transport: message metadata
// (headers anyone can set) and payload bytes. Seed corpora are committed in
// testdata/fuzz/<FuzzName>/; .ci/run fuzzes each target for a few seconds:
//
//	go test -run '^$' -fuzz '^FuzzParseMetadata$' -fuzztime 10s ./internal/event/

// setIf sets md[k] = v when v is not empty, as a header that may be absent.
func setIf(md message.Metadata, k, v string) {
	if v != "" {
		md[k] = v
	}
}

// FuzzParseMetadata: ParseMetadata never panics; it returns a *DecodeError
// with a reason, or metadata with an ID and a name, which SetMetadata writes
// back so that it parses to the same values.
func FuzzParseMetadata(f *testing.F) {
	f.Add("1lg8k0000000000000000000001", "orders.OrderPlaced", "corr-1", "cause-1", "key-1", "2024-01-02T03:04:05.123456789Z")
	f.Add("", "", "", "", "", "")
	f.Add("id", "", "", "", "", "")
	f.Add("", "orders.OrderPlaced", "", "", "", "")
	f.Add("id", "e", "", "", "", "yesterday")
	f.Add("id", "e", "c", "", "", "2024-02-30T00:00:00Z")
	f.Add("id", "e", "", "", "", "2024-01-02T03:04:05+23:59")
	f.Add("id\r\nX: y", "e\x00", "\xff\xfe", "", "k", "0000-01-01T00:00:00Z")
	f.Fuzz(func(t *testing.T, id, name, corr, cause, key, at string) {
		md := message.Metadata{}
		setIf(md, transport.KeyID, id)
		setIf(md, transport.KeyEvent, name)
		setIf(md, transport.KeyCorrelationID, corr)
		setIf(md, transport.KeyCausationID, cause)
		setIf(md, transport.KeyOrderingKey, key)
		setIf(md, transport.KeyPublishedAt, at)
		m, err := event.ParseMetadata(md)
		if err != nil {
			var de *handlers.DecodeError
			if !errors.As(err, &de) || de.Reason == "" || err.Error() == "" {
				t.Fatalf("ParseMetadata error %#v (%v), want a *DecodeError with a reason", err, err)
			}
			if !handlers.IsPermanent(err) {
				t.Fatalf("a metadata error is not permanent: %v", err)
			}
			return
		}
		wantCorr := corr
		if wantCorr == "" {
			wantCorr = id // a root event's correlation ID is its own
		}
		if m.ID != id || m.Name != name || m.ID == "" || m.Name == "" || m.CorrelationID != wantCorr ||
			m.CausationID != cause || m.OrderingKey != key {
			t.Fatalf("ParseMetadata(%v) = %+v", md, m)
		}
		back := message.Metadata{}
		event.SetMetadata(back, m)
		m2, err := event.ParseMetadata(back)
		if err != nil {
			t.Fatalf("metadata written by SetMetadata(%+v) does not parse: %v (%v)", m, err, back)
		}
		if m2.ID != m.ID || m2.Name != m.Name || m2.CorrelationID != m.CorrelationID ||
			m2.CausationID != m.CausationID || m2.OrderingKey != m.OrderingKey || !m2.PublishedAt.Equal(m.PublishedAt) {
			t.Fatalf("round trip: %+v became %+v", m, m2)
		}
	})
}

// FuzzEvent has a field of every kind JSON decodes differently.
type FuzzEvent struct {
	ID    string            `json:"id"`
	N     int64             `json:"n"`
	Q     int64             `json:"q,string"`
	F     float64           `json:"f"`
	U     uint8             `json:"u"`
	B     []byte            `json:"b"`
	T     time.Time         `json:"t"`
	D     *time.Duration    `json:"d"`
	L     []string          `json:"l"`
	A     [2]bool           `json:"a"`
	M     map[string]int    `json:"m"`
	Any   any               `json:"any"`
	Raw   json.RawMessage   `json:"raw"`
	Next  *FuzzEvent        `json:"next"`
	Attrs map[string]string `json:"attrs"`
}

func (FuzzEvent) EventName() string { return "fuzz.Event" }

// FuzzHandlerDecode: the handler built by New, given arbitrary payload bytes
// and arbitrary Herald metadata (bound as a transport's message is, or not
// bound at all), never panics: it calls the func with the decoded event and
// the metadata, or returns a permanent *DecodeError without calling it.
func FuzzHandlerDecode(f *testing.F) {
	f.Add([]byte(`{"id":"o-1","n":1,"q":"2","f":1.5,"u":7,"b":"AAE=","t":"2024-01-02T03:04:05Z","d":5,"l":["a"],"a":[true,false],"m":{"a":1},"any":{"x":[1,"y",null]},"raw":{"k":1},"next":{"id":"o-2"},"attrs":{"k":"v"}}`),
		"id-1", "fuzz.Event", "2024-01-02T03:04:05Z", true, 1)
	f.Add([]byte(`{}`), "id-1", "fuzz.Event", "", true, 0)
	f.Add([]byte(`{"seq": "not a number"`), "id-1", "fuzz.Event", "", true, 1)
	f.Add([]byte(`null`), "", "", "", true, 2)
	f.Add([]byte(``), "id-1", "fuzz.Event", "", false, 1)
	f.Add([]byte(`{"id":"x"}`), "id-1", "other.Event", "", true, 1)
	f.Add([]byte(`{"u":256,"q":"x","t":"never"}`), "id-1", "fuzz.Event", "not a time", true, 3)
	f.Add([]byte("\x00\xff"), "\xff", "fuzz.Event", "", true, -1)
	f.Add([]byte(`[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`), "id", "fuzz.Event", "", true, 1)
	f.Add([]byte(`{"next":{"next":{"next":{"next":{"id":"deep"}}}}}`), "id", "fuzz.Event", "", true, 1)
	f.Fuzz(func(t *testing.T, payload []byte, id, name, at string, bind bool, attempt int) {
		var called bool
		var got handlers.Metadata
		h := event.New[FuzzEvent]("fuzz.Event", func(ctx context.Context, e FuzzEvent) error {
			called = true
			got, _ = handlers.FromContext(ctx)
			return nil
		}, handlers.JSON{}, true)
		msg := message.NewMessage("uuid-1", payload)
		setIf(msg.Metadata, transport.KeyID, id)
		setIf(msg.Metadata, transport.KeyEvent, name)
		setIf(msg.Metadata, transport.KeyPublishedAt, at)
		if bind {
			event.Bind(msg, "fuzz.h", attempt)
		}
		_, err := h(msg)
		if err != nil {
			var de *handlers.DecodeError
			if !errors.As(err, &de) || de.Event != "fuzz.Event" || de.Reason == "" || !handlers.IsPermanent(err) {
				t.Fatalf("error %#v (%v), want a permanent *DecodeError for fuzz.Event", err, err)
			}
			if called {
				t.Fatalf("the func was called and the handler returned %v", err)
			}
			return
		}
		if !called {
			t.Fatal("nil error without calling the func")
		}
		if !json.Valid(payload) {
			t.Fatalf("invalid JSON %q was decoded", payload)
		}
		if bind && (got.ID != id || got.Name != "fuzz.Event" || name != "fuzz.Event" || got.Handler != "fuzz.h" || got.Attempt != attempt) {
			t.Fatalf("metadata in the handler's ctx: %+v (id %q, name %q, attempt %d)", got, id, name, attempt)
		}
	})
}
