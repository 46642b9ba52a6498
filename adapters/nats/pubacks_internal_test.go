package nats

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/transport"
)

// A PubAck is recognised without decoding it only when it is one: every
// reply with an error, or malformed, still fails the publish.
func TestPubAckError(t *testing.T) {
	for _, tc := range []struct {
		data string
		ok   bool
	}{
		{`{"stream":"HERALD","seq":12}`, true},
		{`{"stream":"HERALD","seq":12,"duplicate":true}`, true},
		{`{"stream":"HERALD","domain":"hub","seq":1}`, true},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, false},
		{`{"stream":"HERALD","error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}`, false},
		{`{"stream":"HERALD","seq":1,"error":{"code":500,"description":"x"}}`, false},
		{`{"stream":"","seq":1}`, false},
		{`{"stream":"HERALD","seq":1`, false},
		{`{"seq":1}`, false},
		{`not json`, false},
		{``, false},
	} {
		err := pubAckError(&nats.Msg{Data: []byte(tc.data)})
		if (err == nil) != tc.ok {
			t.Errorf("pubAckError(%s) = %v, want ok=%v", tc.data, err, tc.ok)
		}
		if !tc.ok && okPubAck([]byte(tc.data)) {
			t.Errorf("okPubAck(%s) = true", tc.data)
		}
	}
	var api *jetstream.APIError
	err := pubAckError(&nats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`)})
	if !errors.As(err, &api) || api.ErrorCode != 10077 {
		t.Errorf("error reply: %v, want a *jetstream.APIError with its code", err)
	}
}

// A publish whose PubAck is on its way when the transport closes succeeds:
// the event is stored (and may be handled already, by the very handler that
// closes the transport), so its publisher must not be told otherwise.
func TestCloseWaitsForPubAcksInFlight(t *testing.T) {
	srv := natstest.New(t)
	nc, err := nats.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// A stand-in for the stream: it answers each publish once told to.
	got := make(chan *nats.Msg, 1)
	sub, err := nc.Subscribe("inflight", func(m *nats.Msg) { got <- m })
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()

	a := newAcker(nc, time.Minute, func() {})
	f, err := a.publish(&nats.Msg{Subject: "inflight", Data: []byte("e")})
	if err != nil {
		t.Fatal(err)
	}
	req := <-got
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		a.close(time.Minute)
	}()
	// Answer only once close is waiting.
	bustest.Eventually(t, 10*time.Second, func() bool {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.idle != nil
	}, "close to wait for the PubAck in flight")
	if err := req.Respond([]byte(`{"stream":"HERALD","seq":1}`)); err != nil {
		t.Fatal(err)
	}
	<-closed
	<-f.done
	if f.err != nil {
		t.Errorf("a publish acknowledged while the transport closed: %v, want nil", f.err)
	}
	if _, err := a.publish(&nats.Msg{Subject: "inflight"}); !errors.Is(err, transport.ErrClosed) {
		t.Errorf("publish after close: %v, want ErrClosed", err)
	}

	// With no answer, close gives up after its wait and fails the publish.
	b := newAcker(nc, time.Minute, func() {})
	f, err = b.publish(&nats.Msg{Subject: "inflight", Data: []byte("e")})
	if err != nil {
		t.Fatal(err)
	}
	<-got
	b.close(10 * time.Millisecond)
	<-f.done
	if !errors.Is(f.err, transport.ErrClosed) {
		t.Errorf("a publish never acknowledged: %v after close, want ErrClosed", f.err)
	}
}

// A publish made while the connection is down waits in the client's
// reconnect buffer: no PubAck can come for it, so close does not wait for
// one (it used to wait the whole RequestTimeout, past the bus's Close
// deadline), and fails it with ErrClosed.
func TestCloseDoesNotWaitForPubAcksWhileDisconnected(t *testing.T) {
	srv := natstest.New(t)
	down := make(chan struct{})
	nc, err := nats.Connect(srv.URL(), nats.MaxReconnects(-1), nats.ReconnectWait(time.Hour),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { close(down) }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	a := newAcker(nc, time.Hour, func() {})
	if _, err := a.publish(&nats.Msg{Subject: "first"}); err != nil { // subscribes for PubAcks
		t.Fatal(err)
	}
	srv.Shutdown()
	<-down
	f, err := a.publish(&nats.Msg{Subject: "buffered", Data: []byte("e")})
	if err != nil {
		t.Fatalf("publish while reconnecting: %v, want it buffered", err)
	}
	closed := make(chan struct{})
	go func() {
		defer close(closed)
		a.close(time.Hour)
	}()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("close waited for a PubAck while the connection was down")
	}
	<-f.done
	if !errors.Is(f.err, transport.ErrClosed) {
		t.Errorf("the buffered publish: %v after close, want ErrClosed", f.err)
	}
}
