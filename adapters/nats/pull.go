package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// A pump's pull requests, done with core NATS rather than jetstream's Fetch,
// Consume or Messages:
//
//   - Consume and Messages keep a buffer of messages the caller cannot see:
//     they would age past AckWait unnoticed behind a slow handler (no progress
//     acks), and Stop drops them (redelivered only after AckWait).
//   - Fetch, when cancelled, unsubscribes its inbox at once: a message the
//     server sent in that instant is dropped and waits for AckWait; and each
//     Fetch subscribes a new inbox, which costs the server a subscription
//     change per batch.
//
// Here a pump has one inbox for its life, keeps pull requests outstanding for
// the room it has (a new one when half the room is free, before the previous
// is done), and every message received is the pump's at once (progress-acked,
// nacked at close). At close the inbox is drained: the server stops sending,
// and whatever it sent before arrives and is given back.

const (
	pullExpiry    = 30 * time.Second // how long a pull request waits on the server
	pullHeartbeat = 5 * time.Second  // the server's idle heartbeat on a pull request
)

// pullRequestFmt is JetStream's CONSUMER.MSG.NEXT request.
const pullRequestFmt = `{"batch":%d,"expires":%d,"idle_heartbeat":%d}`

// startPull sends a pull request for n more messages.
func (p *pump) startPull(n int) {
	t := p.s.t
	if p.ensure {
		if p.held() > 0 && time.Since(p.lostAt) < p.ackWait {
			// Let the events handed out settle first: if the consumer is
			// created again, it then starts after them, rather than
			// delivering them twice.
			return
		}
		ctx, cancel := context.WithTimeout(p.ctx, t.cfg.RequestTimeout)
		cons, epoch, err := p.s.consumer(ctx, p.topic)
		cancel()
		if err != nil {
			p.failed(err)
			return
		}
		p.use(cons, epoch)
		p.s.cache(p.topic, cons)
		p.ensure = false
	}
	if p.sub == nil {
		// Room for every message requested, and heartbeats and statuses
		// besides: a full channel would make the connection drop messages.
		p.inbox = t.nc.NewInbox()
		p.ch = make(chan *nats.Msg, t.cfg.Prefetch+64)
		sub, err := t.nc.ChanSubscribe(p.inbox, p.ch)
		if err != nil {
			p.failed(err)
			return
		}
		p.sub = sub
		p.subject = jetstream.DefaultAPIPrefix + "CONSUMER.MSG.NEXT." + t.cfg.StreamName + "." + p.cons.CachedInfo().Name
	}
	if p.outstanding == 0 {
		p.gen = t.reconnectedCh()
		p.silent = 0
	}
	req := fmt.Appendf(nil, pullRequestFmt, n, pullExpiry.Nanoseconds(), pullHeartbeat.Nanoseconds())
	if err := t.nc.PublishRequest(p.subject, p.inbox, req); err != nil {
		p.failed(err)
		return
	}
	p.outstanding += n
}

// received handles a message on the inbox: an event, or a status of one of
// the pull requests.
func (p *pump) received(m *nats.Msg) {
	p.recv++
	status := ""
	if len(m.Data) == 0 && m.Header != nil {
		status = m.Header.Get("Status")
	}
	if status == "" {
		p.queue = append(p.queue, m)
		p.hold(m)
		p.outstanding = max(p.outstanding-1, 0)
		p.fetchFails = 0
		return
	}
	descr := m.Header.Get("Description")
	switch status {
	case "100": // idle heartbeat
	case "404", "408": // no messages, request expired
		p.requestEnded(m)
	case "409":
		switch d := strings.ToLower(descr); {
		case strings.Contains(d, "consumer deleted"):
			p.outstanding = 0
			p.failed(jetstream.ErrConsumerDeleted)
		case strings.Contains(d, "leadership change"):
			p.outstanding = 0 // the new leader has none of the requests
		default: // exceeded MaxWaiting, batch completed, ...
			p.requestEnded(m)
			p.failed(fmt.Errorf("nats: pull request: %s", descr))
		}
	case "503": // no consumer answers
		p.outstanding = 0
		p.failed(nats.ErrNoResponders)
	default:
		p.requestEnded(m)
		p.failed(fmt.Errorf("nats: pull request: status %s %s", status, descr))
	}
}

// requestEnded accounts for the messages a finished pull request will not
// deliver (the Nats-Pending-Messages header of its status).
func (p *pump) requestEnded(m *nats.Msg) {
	left, err := strconv.Atoi(m.Header.Get("Nats-Pending-Messages"))
	if err != nil {
		p.outstanding = 0 // unknown: ask again rather than wait
		return
	}
	p.outstanding = max(p.outstanding-left, 0)
}

// checkHeartbeat runs every pullHeartbeat: if requests are outstanding and
// nothing (not even a heartbeat) came for two periods, the server lost them.
func (p *pump) checkHeartbeat() {
	if p.outstanding == 0 || p.recv != p.lastRecv {
		p.silent, p.lastRecv = 0, p.recv
		return
	}
	if p.silent++; p.silent >= 2 {
		p.outstanding = 0
		p.failed(jetstream.ErrNoHeartbeat)
	}
}

// closeInbox drains the inbox (the server is told to stop, then a round trip
// makes sure everything it sent before has arrived) and keeps the events that
// arrived.
func (p *pump) closeInbox() {
	if p.sub == nil {
		return
	}
	t := p.s.t
	if err := p.sub.Drain(); err == nil && t.nc.IsConnected() {
		_ = t.nc.FlushTimeout(t.cfg.RequestTimeout)
	}
	for {
		select {
		case m := <-p.ch:
			if len(m.Data) > 0 || m.Header.Get("Status") == "" {
				p.queue = append(p.queue, m)
				p.hold(m)
			}
		default:
			p.sub = nil
			return
		}
	}
}

// failed logs a pull error and waits before the next pull: 100ms, doubling
// to 10s. A consumer that may be missing is looked up (and created again if
// it is) before the next pull.
func (p *pump) failed(err error) {
	if p.ctx.Err() != nil {
		return
	}
	// A missing consumer shows as one of these; nats-server 2.9 answers a
	// pull request for a consumer that is gone with nothing at all (so no
	// heartbeat). Looking it up is cheap, and creates it again if missing.
	if !p.ensure && (errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, jetstream.ErrNoHeartbeat)) {
		p.ensure, p.lostAt = true, time.Now()
	}
	if p.retryC != nil {
		// A retry is already due: this is the end of another request sent
		// before it (a deleted consumer ends them all), not one more failure
		// to back off from.
		return
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
