package nats

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/transport"
)

// Pipelined publishing with core NATS, rather than jetstream's
// PublishMsgAsync: nats.go v1.55's async publisher starts, at the first
// async publish, a goroutine (resetPendingAcksOnReconnect) that reads the
// publisher's status channel from a shared field when it first runs, and
// CleanupPublisher closes that channel and sets the field to nil; a close
// soon after the first publish strands the goroutine on a nil channel
// forever. Without CleanupPublisher its reply subscription and goroutine
// live as long as the connection, which the caller may own.
//
// Here the transport owns everything: one reply subscription
// ("<inbox>.*", made at the first publish), one future per publish awaiting
// its PubAck, a timer per future (PubAckTimeout), and Close, which
// unsubscribes and fails what is still pending. A lost connection fails the
// pending futures with nats.ErrDisconnected (their PubAcks may never come;
// a publish retried with the same message ID is a duplicate the stream
// drops), as jetstream's publisher does.

// pubFuture is the outcome of one publish: done is closed once err (nil:
// acknowledged) is set.
type pubFuture struct {
	done  chan struct{}
	err   error
	timer *time.Timer

	mu    sync.Mutex
	fired bool
	then  func(error) // called once with err when the future is done
}

// onDone calls fn with the outcome once the future is done: at once if it is.
func (f *pubFuture) onDone(fn func(error)) {
	f.mu.Lock()
	if f.fired {
		f.mu.Unlock()
		fn(f.err)
		return
	}
	f.then = fn
	f.mu.Unlock()
}

// finish sets the outcome, closes done and calls the onDone function.
func (f *pubFuture) finish(err error) {
	f.mu.Lock()
	f.err, f.fired = err, true
	fn := f.then
	f.mu.Unlock()
	close(f.done)
	if fn != nil {
		fn(err)
	}
}

// acker matches PubAcks to the publishes awaiting them.
type acker struct {
	nc      *nats.Conn
	timeout time.Duration
	settled func() // called once per publish sent, when its future is done

	mu      sync.Mutex
	closed  bool
	sub     *nats.Subscription
	prefix  string // of the reply subjects: "<inbox>."
	next    uint64
	pending map[string]*pubFuture // by reply token
	idle    chan struct{}         // closing: closed once pending is empty
}

func newAcker(nc *nats.Conn, timeout time.Duration, settled func()) *acker {
	return &acker{nc: nc, timeout: timeout, settled: settled, pending: map[string]*pubFuture{}}
}

// errPubAckTimeout fails a publish whose PubAck did not come within
// PubAckTimeout.
var errPubAckTimeout = errors.New("no PubAck within the PubAckTimeout")

// publish sends m with a reply subject of its own and returns its future.
// On error nothing was sent and settled is not called.
func (a *acker) publish(m *nats.Msg) (*pubFuture, error) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, transport.ErrClosed
	}
	if a.sub == nil {
		prefix := a.nc.NewInbox() + "."
		sub, err := a.nc.Subscribe(prefix+"*", a.reply)
		if err != nil {
			a.mu.Unlock()
			return nil, fmt.Errorf("subscribe for PubAcks: %w", err)
		}
		a.sub, a.prefix = sub, prefix
	}
	a.next++
	id := strconv.FormatUint(a.next, 36)
	f := &pubFuture{done: make(chan struct{})}
	a.pending[id] = f
	f.timer = time.AfterFunc(a.timeout, func() { a.resolve(id, errPubAckTimeout, true) })
	m.Reply = a.prefix + id
	a.mu.Unlock()
	if err := a.nc.PublishMsg(m); err != nil {
		if a.resolve(id, err, false) {
			return nil, err
		}
		// Failed meanwhile (disconnect, close), as if sent: settled was
		// called, so the future is the outcome.
	}
	return f, nil
}

// reply handles a PubAck (or the no-responders status of a publish no
// stream captured).
func (a *acker) reply(m *nats.Msg) {
	a.mu.Lock()
	prefix := a.prefix
	a.mu.Unlock()
	if len(m.Subject) <= len(prefix) {
		return
	}
	a.resolve(m.Subject[len(prefix):], pubAckError(m), true)
}

// pubAckError is nil for a PubAck, the error of an error reply.
func pubAckError(m *nats.Msg) error {
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		return nats.ErrNoResponders
	}
	if okPubAck(m.Data) {
		return nil
	}
	var resp struct {
		jetstream.PubAck
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return fmt.Errorf("invalid PubAck %q: %w", m.Data, err)
	}
	if resp.Error != nil {
		return resp.Error
	}
	if resp.Stream == "" {
		return fmt.Errorf("invalid PubAck %q: no stream", m.Data)
	}
	return nil
}

// okPubAck reports, without decoding it, whether data is a PubAck the
// server sent for a stored event: a JSON object that starts with its stream's
// name and has no "error" key (every error reply has one). Anything else is
// decoded by pubAckError.
func okPubAck(data []byte) bool {
	const start = `{"stream":"`
	return len(data) > len(start)+2 && string(data[:len(start)]) == start && data[len(start)] != '"' &&
		data[len(data)-1] == '}' && !bytes.Contains(data, []byte(`"error"`))
}

// resolve completes the future of id with err, once; sent says whether its
// message was sent (settled is called then). It reports whether it did: false
// if the future was already complete (timed out, failed or closed).
func (a *acker) resolve(id string, err error, sent bool) bool {
	a.mu.Lock()
	f, ok := a.pending[id]
	delete(a.pending, id)
	if a.idle != nil && len(a.pending) == 0 {
		close(a.idle)
		a.idle = nil
	}
	a.mu.Unlock()
	if !ok {
		return false
	}
	f.timer.Stop()
	f.finish(err)
	if sent {
		a.settled()
	}
	return true
}

// failAll completes every pending future with err.
func (a *acker) failAll(err error) {
	a.mu.Lock()
	ids := make([]string, 0, len(a.pending))
	for id := range a.pending {
		ids = append(ids, id)
	}
	a.mu.Unlock()
	for _, id := range ids {
		a.resolve(id, err, true)
	}
}

// close refuses new publishes (transport.ErrClosed), waits up to wait for the
// PubAcks of those in flight while the connection is up (a lost connection
// fails them at once; publishes made while it is down wait in the client's
// reconnect buffer, and no PubAck can come for them), then fails what is
// still pending with transport.ErrClosed and unsubscribes. Waiting matters:
// an event the stream stored may already be handled, and the handler may be
// what closes the transport; its publisher must still learn that the
// publish succeeded.
func (a *acker) close(wait time.Duration) {
	a.mu.Lock()
	a.closed = true
	var idle chan struct{}
	if len(a.pending) > 0 && a.sub != nil && a.nc.IsConnected() {
		idle = make(chan struct{})
		a.idle = idle
	}
	a.mu.Unlock()
	if idle != nil {
		timer := time.NewTimer(wait)
		select {
		case <-idle:
		case <-timer.C:
		}
		timer.Stop()
	}
	a.mu.Lock()
	sub := a.sub
	a.sub = nil
	a.mu.Unlock()
	a.failAll(transport.ErrClosed)
	if sub != nil {
		_ = sub.Unsubscribe()
	}
}
