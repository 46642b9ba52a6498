package nats

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
)

// Subscriber returns a watermill subscriber that consumes as the handler
// handlerName. Its Subscribe(ctx, topic) creates (or reuses) the durable
// consumer of (handlerName, topic) and returns a channel of its messages:
//
//   - Every handler name gets every event of its topic; the Subscribe calls of
//     one name, in this process or others, share (compete for) its events;
//     events published while no process of the name runs wait for it. A new
//     name starts with the events published after its consumer is created.
//   - Each channel gives one message at a time and the next only after the
//     previous one is acked or nacked (watermill's contract). Ack acks the
//     event on the server; Nack redelivers it after NakDelay, doubling with
//     each delivery up to MaxNakDelay, or at once if the message's context
//     (the Subscribe ctx) has ended, i.e. on shutdown.
//   - A received message has UUID = its Nats-Msg-Id (or Herald-Id) header,
//     every header as metadata except Nats-* ones, and [DeliveryCountKey] =
//     the number of deliveries to this handler. Its context is Subscribe's ctx.
//   - While the transport holds an event (prefetched or being handled), it
//     sends progress acks every AckWait/3, so the server never redelivers it
//     to another worker while it is handled.
//
// The channel closes when ctx ends or the subscriber closes. Close stops
// consuming, nacks the events fetched and not yet handled (they come back at
// once, to any process), and waits for its goroutines. It never closes or
// drains the connection (watermill-nats's does). Subscriber fails with
// [ErrClosed] on a closed transport.
func (t *Transport) Subscriber(handlerName string) (message.Subscriber, error) {
	if err := validSubject(handlerName); err != nil {
		return nil, fmt.Errorf("herald/nats: handler name: %v", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClosed() {
		return nil, ErrClosed
	}
	s := &subscriber{t: t, handler: handlerName, closing: make(chan struct{}), consumers: map[string]jetstream.Consumer{}}
	t.subs[s] = struct{}{}
	return s, nil
}

type subscriber struct {
	t       *Transport
	handler string

	mu        sync.Mutex
	closed    bool
	closing   chan struct{}
	consumers map[string]jetstream.Consumer // by topic
	wg        sync.WaitGroup
}

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	if err := validSubject(topic); err != nil {
		return nil, fmt.Errorf("herald/nats: topic: %v", err)
	}
	if err := s.t.prepare(ctx); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	cons, ok := s.consumers[topic]
	if !ok {
		var err error
		if cons, err = s.ensureConsumer(ctx, topic); err != nil {
			return nil, err
		}
		s.consumers[topic] = cons
	}
	p := &pump{s: s, cons: cons, topic: topic, ctx: ctx, out: make(chan *message.Message)}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		p.run()
	}()
	return p.out, nil
}

// ensureConsumer creates the durable consumer of (s.handler, topic), or
// updates the settings of an existing one (its position is kept).
func (s *subscriber) ensureConsumer(ctx context.Context, topic string) (jetstream.Consumer, error) {
	name := consumerName(s.handler, topic)
	c := s.t.cfg
	cons, err := s.t.events.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       name,
		Description:   fmt.Sprintf("Herald handler %q, topic %q", s.handler, topic),
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: c.MaxAckPending,
		FilterSubject: s.t.Subject(topic),
	})
	if err != nil {
		return nil, fmt.Errorf("herald/nats: consumer %q of handler %q on %q: %w", name, s.handler, s.t.Subject(topic), err)
	}
	return cons, nil
}

func (s *subscriber) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.closing)
	}
	s.mu.Unlock()
	s.wg.Wait()
	s.t.mu.Lock()
	delete(s.t.subs, s)
	s.t.mu.Unlock()
	return nil
}

// pump feeds one Subscribe channel from the consumer. It fetches up to
// Prefetch messages ahead (a new fetch when half the room is free), hands
// them out one at a time, acks or nacks each as the receiver does, and
// progress-acks every message it holds. It is the only goroutine touching
// its messages, so none needs a lock, and there is one per Subscribe call.
//
// Fetch rather than Consume or Messages: those keep a buffer of messages the
// caller cannot see, which would age past AckWait unnoticed behind a slow
// handler, and which Stop drops (left to AckWait) instead of giving back.
type pump struct {
	s     *subscriber
	cons  jetstream.Consumer
	topic string
	ctx   context.Context
	out   chan *message.Message

	queue  []jetstream.Msg // fetched, not handed out, oldest first
	cur    jetstream.Msg   // handed out, waiting for Ack or Nack
	curWM  *message.Message
	nextWM *message.Message // queue[0] as a watermill message, once built

	batch       <-chan jetstream.Msg
	res         jetstream.MessageBatch
	cancelFetch context.CancelFunc
	fetchGen    <-chan struct{} // the reconnect channel when the fetch began
	fetchFails  int
	retry       *time.Timer
	retryC      <-chan time.Time
	ensure      bool // recreate the consumer before the next fetch
}

// fetchExpiry is how long an idle pull request waits on the server.
const fetchExpiry = 30 * time.Second

func (p *pump) run() {
	defer close(p.out)
	t := p.s.t
	every := t.cfg.AckWait / 3
	progress := time.NewTicker(every)
	defer progress.Stop()
	defer func() {
		if p.retry != nil {
			p.retry.Stop()
		}
	}()
	refill := max(1, t.cfg.Prefetch/2)
	for {
		if p.res == nil && p.retryC == nil {
			if room := t.cfg.Prefetch - len(p.queue) - p.held(); room >= refill {
				p.fetch(room)
			}
		}
		var out chan<- *message.Message
		if p.cur == nil && len(p.queue) > 0 {
			if p.nextWM == nil {
				p.nextWM = p.message(p.queue[0])
			}
			out = p.out
		}
		var acked, nacked <-chan struct{}
		if p.curWM != nil {
			acked, nacked = p.curWM.Acked(), p.curWM.Nacked()
		}
		select {
		case out <- p.nextWM:
			p.cur, p.curWM, p.nextWM = p.queue[0], p.nextWM, nil
			p.queue[0] = nil
			p.queue = p.queue[1:]
		case <-acked:
			p.ack(p.cur)
			p.cur, p.curWM = nil, nil
		case <-nacked:
			p.nak(p.cur, p.curWM)
			p.cur, p.curWM = nil, nil
		case m, ok := <-p.batch:
			if ok {
				p.queue = append(p.queue, m)
				continue
			}
			p.fetched()
		case <-p.fetchGen:
			// Reconnected: the server forgot the pull request; end it (its
			// channel closes soon) and pull again.
			p.cancelFetch()
			p.fetchGen = nil
		case <-p.retryC:
			p.retryC = nil
		case <-progress.C:
			for _, m := range p.queue {
				_ = m.InProgress()
			}
			if p.cur != nil {
				_ = p.cur.InProgress()
			}
		case <-p.ctx.Done():
			p.shutdown()
			return
		case <-p.s.closing:
			p.shutdown()
			return
		}
	}
}

func (p *pump) held() int {
	if p.cur != nil {
		return 1
	}
	return 0
}

// fetch starts a pull request for up to n messages.
func (p *pump) fetch(n int) {
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
	ctx, cancel := context.WithTimeout(p.ctx, fetchExpiry)
	gen := t.reconnectedCh()
	res, err := p.cons.Fetch(n, jetstream.FetchContext(ctx))
	if err != nil {
		cancel()
		p.failed(err)
		return
	}
	p.res, p.batch, p.cancelFetch, p.fetchGen = res, res.Messages(), cancel, gen
}

// fetched handles the end of a pull request.
func (p *pump) fetched() {
	err := p.res.Error()
	p.cancelFetch()
	p.res, p.batch, p.fetchGen = nil, nil, nil
	if err == nil || errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		p.fetchFails = 0
		return
	}
	p.failed(err)
}

// failed logs a fetch error and waits before the next fetch: 100ms, doubling
// to 10s.
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
		p.s.t.cfg.Logger.Warn("fetch failed; retrying", zap.String("handler", p.s.handler), zap.String("topic", p.topic),
			zap.Int("failures", p.fetchFails), zap.Duration("retry_in", d), zap.Error(err))
	}
	if p.retry == nil {
		p.retry = time.NewTimer(d)
	} else {
		p.retry.Reset(d)
	}
	p.retryC = p.retry.C
}

// message converts a fetched message to a watermill one.
func (p *pump) message(m jetstream.Msg) *message.Message {
	h := m.Headers()
	id := h.Get(jetstream.MsgIDHeader)
	if id == "" {
		id = h.Get("Herald-Id")
	}
	var delivered uint64 = 1
	md, err := m.Metadata()
	if err == nil {
		delivered = md.NumDelivered
		if id == "" {
			id = md.Stream + "-" + strconv.FormatUint(md.Sequence.Stream, 10)
		}
	}
	wm := message.NewMessage(id, m.Data())
	for k, v := range h {
		if len(v) > 0 && !reservedKey(k) {
			wm.Metadata[k] = v[0]
		}
	}
	wm.Metadata[DeliveryCountKey] = strconv.FormatUint(delivered, 10)
	wm.SetContext(p.ctx)
	return wm
}

func (p *pump) ack(m jetstream.Msg) {
	if err := m.Ack(); err != nil {
		p.s.t.cfg.Logger.Warn("ack failed; the event will be redelivered", zap.String("handler", p.s.handler), zap.Error(err))
	}
}

// nak nacks m: at once on shutdown (another process takes it), otherwise
// after a delay growing with its deliveries.
func (p *pump) nak(m jetstream.Msg, wm *message.Message) {
	var err error
	if wm.Context().Err() != nil {
		err = m.Nak()
	} else {
		err = m.NakWithDelay(p.nakDelay(wm))
	}
	if err != nil {
		p.s.t.cfg.Logger.Warn("nak failed; the event will be redelivered after AckWait", zap.String("handler", p.s.handler), zap.Error(err))
	}
}

func (p *pump) nakDelay(wm *message.Message) time.Duration {
	c := p.s.t.cfg
	n, _ := strconv.Atoi(wm.Metadata.Get(DeliveryCountKey))
	d := c.NakDelay
	for i := 1; i < n && d < c.MaxNakDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxNakDelay)
}

// shutdown ends the pull request and gives back every message held: those
// not handed out are nacked (redelivered at once), the one handed out is
// acked or nacked as its receiver said, or nacked if it said nothing yet.
func (p *pump) shutdown() {
	if p.res != nil {
		p.cancelFetch()
		for m := range p.batch {
			p.queue = append(p.queue, m)
		}
	}
	for _, m := range p.queue {
		_ = m.Nak()
	}
	p.queue = nil
	if p.cur != nil {
		select {
		case <-p.curWM.Acked():
			p.ack(p.cur)
		default:
			_ = p.cur.Nak()
		}
	}
}
