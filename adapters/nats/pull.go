package nats

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// A pull request of a pump, done with core NATS rather than jetstream's Fetch,
// Consume or Messages:
//
//   - Consume and Messages keep a buffer of messages the caller cannot see:
//     they would age past AckWait unnoticed behind a slow handler (no progress
//     acks), and Stop drops them (redelivered only after AckWait).
//   - Fetch, when cancelled, unsubscribes its inbox at once: a message the
//     server sent in that instant is dropped and waits for AckWait.
//
// Here every message received is the pump's at once (progress-acked, nacked
// at close), and a pull is ended by draining its subscription: the server
// stops sending, and whatever it sent before arrives and is given back.

const (
	pullExpiry    = 30 * time.Second // how long an idle pull request waits on the server
	pullHeartbeat = 5 * time.Second  // the server's idle heartbeat on a pull request
)

type pull struct {
	sub  *nats.Subscription
	ch   chan *nats.Msg
	left int             // messages still to come
	hb   *time.Timer     // fires when heartbeats stop
	gen  <-chan struct{} // closed when the connection comes back
}

// pullRequest is JetStream's CONSUMER.MSG.NEXT request.
const pullRequestFmt = `{"batch":%d,"expires":%d,"idle_heartbeat":%d}`

// startPull sends a pull request for up to n messages.
func (p *pump) startPull(n int) {
	t := p.s.t
	if p.ensure {
		ctx, cancel := context.WithTimeout(p.ctx, t.cfg.RequestTimeout)
		cons, err := p.s.ensureConsumer(ctx, p.topic)
		cancel()
		if err != nil {
			p.failed(err)
			return
		}
		p.cons, p.ensure = cons, false
	}
	gen := t.reconnectedCh()
	inbox := t.nc.NewInbox()
	// Room for every message, and heartbeats and statuses besides: a full
	// channel would make the connection drop messages (slow consumer).
	ch := make(chan *nats.Msg, n+64)
	sub, err := t.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		p.failed(err)
		return
	}
	subject := jetstream.DefaultAPIPrefix + "CONSUMER.MSG.NEXT." + t.cfg.StreamName + "." + p.cons.CachedInfo().Name
	req := fmt.Appendf(nil, pullRequestFmt, n, pullExpiry.Nanoseconds(), pullHeartbeat.Nanoseconds())
	if err := t.nc.PublishRequest(subject, inbox, req); err != nil {
		_ = sub.Unsubscribe()
		p.failed(err)
		return
	}
	p.pull = &pull{sub: sub, ch: ch, left: n, hb: time.NewTimer(2 * pullHeartbeat), gen: gen}
}

// received handles a message of the pull request: an event, or a status.
func (p *pump) received(m *nats.Msg) {
	pl := p.pull
	pl.hb.Reset(2 * pullHeartbeat)
	status := ""
	if len(m.Data) == 0 && m.Header != nil {
		status = m.Header.Get("Status")
	}
	if status == "" {
		p.queue = append(p.queue, m)
		if pl.left--; pl.left == 0 {
			p.endPull(nil)
		}
		return
	}
	descr := m.Header.Get("Description")
	switch status {
	case "100": // idle heartbeat
	case "404", "408": // no messages, request expired
		p.endPull(nil)
	case "409":
		switch d := strings.ToLower(descr); {
		case strings.Contains(d, "consumer deleted"):
			p.endPull(jetstream.ErrConsumerDeleted)
		case strings.Contains(d, "leadership change"), strings.Contains(d, "batch completed"):
			p.endPull(nil)
		default:
			p.endPull(fmt.Errorf("nats: pull request: %s", descr))
		}
	case "503":
		p.endPull(nats.ErrNoResponders)
	default:
		p.endPull(fmt.Errorf("nats: pull request: status %s %s", status, descr))
	}
}

// endPull ends the pull request, which the server has finished (or
// forgotten), and waits before the next one if err says so.
func (p *pump) endPull(err error) {
	pl := p.pull
	p.pull = nil
	pl.hb.Stop()
	_ = pl.sub.Unsubscribe()
	p.takeRest(pl.ch)
	if err == nil {
		p.fetchFails = 0
		return
	}
	p.failed(err)
}

// drainPull ends a pull request the server may still be serving: it drains
// the subscription (the server is told to stop, then a round trip makes sure
// everything it sent before has arrived) and keeps the events that arrived.
func (p *pump) drainPull() {
	pl := p.pull
	p.pull = nil
	pl.hb.Stop()
	t := p.s.t
	if err := pl.sub.Drain(); err == nil && t.nc.IsConnected() {
		_ = t.nc.FlushTimeout(t.cfg.RequestTimeout)
	}
	p.takeRest(pl.ch)
}

// takeRest queues the events left in ch, skipping statuses.
func (p *pump) takeRest(ch chan *nats.Msg) {
	for {
		select {
		case m := <-ch:
			if len(m.Data) > 0 || m.Header.Get("Status") == "" {
				p.queue = append(p.queue, m)
			}
		default:
			return
		}
	}
}

// failed logs a pull error and waits before the next pull: 100ms, doubling
// to 10s. A missing consumer is created again before the next pull.
func (p *pump) failed(err error) {
	if p.ctx.Err() != nil {
		return
	}
	if errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, nats.ErrNoResponders) {
		p.ensure = true
	}
	p.fetchFails++
	d := min(100*time.Millisecond<<min(p.fetchFails-1, 7), 10*time.Second)
	if p.fetchFails == 1 || p.fetchFails%10 == 0 {
		p.s.t.cfg.Logger.Warn("pull failed; retrying", zap.String("handler", p.s.handler), zap.String("topic", p.topic),
			zap.Int("failures", p.fetchFails), zap.Duration("retry_in", d), zap.Error(err))
	}
	if p.retry == nil {
		p.retry = time.NewTimer(d)
	} else {
		p.retry.Reset(d)
	}
	p.retryC = p.retry.C
}
