package rabbitmq

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

// Subscriber returns a watermill subscriber that consumes as the handler
// handlerName. Its Subscribe(ctx, topic) declares (or reuses) the durable
// quorum queue of (handlerName, topic), bound to the events exchange with the
// key topic, before it returns, and consumes it on a channel of its own:
//
//   - Every handler name gets every event of its topic published after its
//     queue first existed; the Subscribe calls of one name, in this process
//     or others, compete for its events; events published while no process
//     of the name runs wait in the queue.
//   - Each channel gives one message at a time and the next only after the
//     previous one is acked or nacked, unless it was opened with
//     SubscribeWindow(ctx, topic, n): then up to n at a time, in queue order,
//     each settled whenever its receiver acks or nacks it. Ack acks the
//     delivery; Nack sends the event to the wait queue of its delay (NakDelay,
//     doubling with each delivery up to MaxNakDelay), from which the broker
//     dead-letters it back to this queue alone, or requeues it at once if the
//     message's context (the Subscribe ctx) has ended, i.e. on shutdown.
//   - A received message has UUID = its message-id (or Herald-Id header),
//     every header as metadata except lower-case "x-..." ones, and
//     [transport.KeyDeliveryCount] = the number of deliveries to this
//     handler, counted across requeues and delays. Its context is Subscribe's
//     ctx.
//   - Each channel holds at most max(Prefetch, n) unacknowledged deliveries
//     (basic.qos). When the connection is lost, the broker requeues them; the
//     subscription consumes again on the next connection, and an Ack given to
//     a message of the lost connection is dropped (the event comes again: at
//     least once).
//
// The channel closes when ctx ends or the subscriber closes. Close stops
// consuming, acks what was acked, gives every other delivery back to its
// queue at once (they go to any process), and waits for its goroutines.
// Subscriber fails with [transport.ErrClosed] on a closed transport and with
// [transport.ErrInvalidName] for a name that cannot be a routing key.
func (t *Transport) Subscriber(handlerName string) (message.Subscriber, error) {
	if err := validRoutingKey(handlerName); err != nil {
		return nil, fmt.Errorf("herald/rabbitmq: handler name: %w", err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	s := &subscriber{t: t, handler: handlerName}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t.subs[s] = struct{}{}
	return s, nil
}

type subscriber struct {
	t       *Transport
	handler string
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	feeds   adapterkit.Feeds // the pumps
}

var _ transport.WindowSubscriber = (*subscriber)(nil)

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.SubscribeWindow(ctx, topic, 1)
}

// SubscribeWindow is Subscribe with up to window messages handed out before
// they are settled (transport.WindowSubscriber), in queue order.
func (s *subscriber) SubscribeWindow(ctx context.Context, topic string, window int) (<-chan *message.Message, error) {
	if err := validRoutingKey(topic); err != nil {
		return nil, fmt.Errorf("herald/rabbitmq: topic: %w", err)
	}
	if err := s.t.prepare(ctx); err != nil {
		return nil, err
	}
	if s.feeds.Closed() {
		return nil, transport.ErrClosed
	}
	q := s.t.QueueName(s.handler, topic)
	if err := s.t.withChannel(ctx, func(ch *amqp.Channel) error { return s.declare(ch, q, topic) }); err != nil {
		return nil, err
	}
	p := &pump{s: s, topic: topic, queue: q, ctx: ctx, out: make(chan *message.Message), prefetch: max(s.t.cfg.Prefetch, window)}
	p.win.Open(window)
	if err := s.feeds.Start(p.run); err != nil {
		return nil, err
	}
	return p.out, nil
}

// declare declares the durable quorum queue q and binds it to the events
// exchange with key topic; both are idempotent.
func (s *subscriber) declare(ch *amqp.Channel, q, topic string) error {
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp.Table{amqp.QueueTypeArg: amqp.QueueTypeQuorum}); err != nil {
		return fmt.Errorf("declare queue %q of handler %q: %w", q, s.handler, err)
	}
	if err := ch.QueueBind(q, topic, s.t.exchange(), false, nil); err != nil {
		return fmt.Errorf("bind queue %q to %q with key %q: %w", q, s.t.exchange(), topic, err)
	}
	return nil
}

// Close stops the subscriber's channels and waits for their goroutines.
func (s *subscriber) Close() error {
	s.cancel() // first: the pumps Close waits for end on it
	s.feeds.Close()
	adapterkit.Remove(&s.t.mu, s.t.subs, s)
	return nil
}

// held is a delivery handed out, and the channel it came on: an ack is only
// valid there.
type held struct {
	d  amqp.Delivery
	ch *amqp.Channel
}

// pump feeds one Subscribe channel from a consumer on a channel of its own:
// it takes a delivery when it may hand one out, hands it out, and acks or
// nacks it as the receiver does. When its channel is lost it opens another
// (waiting for the connection). It is the only goroutine touching its
// deliveries; there is one per Subscribe call.
type pump struct {
	s        *subscriber
	topic    string
	queue    string
	ctx      context.Context // Subscribe's
	out      chan *message.Message
	prefetch int

	ch         *amqp.Channel // nil while there is none
	deliveries <-chan amqp.Delivery
	chClosed   chan *amqp.Error

	next  *message.Message // taken, not yet handed out
	nextH held
	cur   *message.Message // handed out (window 1)
	curH  held

	// With SubscribeWindow(n > 1): up to n messages handed out at once,
	// each watched by a goroutine that reports its Ack or Nack.
	win adapterkit.Window[held]

	retryC <-chan time.Time // set while waiting to open a channel again
}

func (p *pump) run() {
	defer close(p.out)
	defer p.win.Stop()
	// stop ends when Subscribe's ctx does or the subscriber closes.
	stop, cancel := context.WithCancel(p.ctx)
	defer cancel()
	defer context.AfterFunc(p.s.ctx, cancel)()
	wait := p.s.t.cfg.ReconnectWait
	var retry *time.Timer
	defer func() {
		if retry != nil {
			retry.Stop()
		}
	}()
	for {
		if p.ch == nil && p.retryC == nil {
			if err := p.open(stop); err != nil {
				if stop.Err() != nil {
					p.shutdown()
					return
				}
				p.s.t.cfg.Logger.Warn("rabbitmq consume failed; retrying", zap.String("queue", p.queue), zap.Error(err), zap.Duration("in", wait))
				retry = time.NewTimer(wait)
				p.retryC = retry.C
				wait = min(2*wait, p.s.t.cfg.MaxReconnectWait)
			} else {
				wait = p.s.t.cfg.ReconnectWait
			}
		}
		var in <-chan amqp.Delivery
		if p.ch != nil && p.next == nil && p.win.Free(p.cur == nil) {
			in = p.deliveries
		}
		var out chan<- *message.Message
		if p.next != nil {
			out = p.out
		}
		var acked, nacked <-chan struct{}
		if p.cur != nil {
			acked, nacked = p.cur.Acked(), p.cur.Nacked()
		}
		select {
		case d, ok := <-in:
			if !ok {
				p.lost()
				continue
			}
			p.next, p.nextH = p.message(d), held{d: d, ch: p.ch}
		case out <- p.next:
			if p.win.Held != nil {
				wm := p.next
				p.win.Held[wm] = p.nextH
				p.s.feeds.Go(func() { p.win.Watch(wm) })
			} else {
				p.cur, p.curH = p.next, p.nextH
			}
			p.next = nil
		case <-acked:
			p.ack(p.curH)
			p.cur = nil
		case <-nacked:
			p.nack(p.curH, p.cur)
			p.cur = nil
		case st := <-p.win.Settled:
			p.win.Settle(st, p.ack, p.nack)
		case <-p.chClosed:
			p.lost()
		case <-p.retryC:
			p.retryC = nil
		case <-stop.Done():
			p.shutdown()
			return
		}
	}
}

// open opens a channel on the current connection (waiting for one until ctx
// ends), declares the queue again (a broker that lost it gets it back) and
// consumes it.
func (p *pump) open(ctx context.Context) error {
	ch, err := p.s.t.link.channel(ctx)
	if err != nil {
		return fmt.Errorf("herald/rabbitmq: consume %q: %w", p.queue, err)
	}
	fail := func(err error) error {
		_ = ch.Close()
		return fmt.Errorf("herald/rabbitmq: consume %q: %w", p.queue, err)
	}
	if err := ch.Qos(p.prefetch, 0, false); err != nil {
		return fail(err)
	}
	if err := p.s.declare(ch, p.queue, p.topic); err != nil {
		return fail(err)
	}
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	deliveries, err := ch.Consume(p.queue, "", false, false, false, false, nil)
	if err != nil {
		return fail(err)
	}
	p.ch, p.deliveries, p.chClosed = ch, deliveries, closed
	return nil
}

// lost forgets a channel that closed: the broker requeued its unacknowledged
// deliveries, so the one taken and not handed out is dropped, and those
// handed out are settled with nothing sent.
func (p *pump) lost() {
	if p.ch != nil {
		_ = p.ch.Close()
	}
	p.ch, p.deliveries, p.chClosed = nil, nil, nil
	p.next = nil
}

// valid reports whether h's delivery can still be acked: it came on the
// current channel.
func (p *pump) valid(h held) bool { return p.ch != nil && h.ch == p.ch && !p.ch.IsClosed() }

func (p *pump) ack(h held) {
	if !p.valid(h) {
		return // its channel was lost: the broker redelivers it
	}
	if err := p.ch.Ack(h.d.DeliveryTag, false); err != nil {
		p.s.t.cfg.Logger.Warn("ack failed; the event will be redelivered", zap.String("queue", p.queue), zap.Error(err))
	}
}

// nack gives h's delivery back: at once on shutdown, otherwise through the
// wait queue of its delay.
func (p *pump) nack(h held, wm *message.Message) {
	if !p.valid(h) {
		return
	}
	if wm.Context().Err() == nil && p.delay(h, wm) {
		return
	}
	if err := p.ch.Nack(h.d.DeliveryTag, false, true); err != nil {
		p.s.t.cfg.Logger.Warn("nack failed; the event will be redelivered", zap.String("queue", p.queue), zap.Error(err))
	}
}

// message converts a delivery to a watermill message.
func (p *pump) message(d amqp.Delivery) *message.Message {
	id := d.MessageId
	if id == "" {
		id, _ = d.Headers[transport.KeyID].(string)
	}
	if id == "" {
		id = randomID()
	}
	wm := message.NewMessage(id, d.Body)
	for k, v := range d.Headers {
		if !reservedKey(k) {
			wm.Metadata[k] = headerString(v)
		}
	}
	wm.Metadata[transport.KeyDeliveryCount] = strconv.Itoa(deliveries(d.Headers))
	wm.SetContext(p.ctx)
	return wm
}

// Headers the transport reads. The quorum queue counts the returns of a
// message in x-delivery-count; a message the transport moves through a wait
// queue carries the deliveries it had before in x-herald-deliveries.
const (
	hdrDeliveryCount = "x-delivery-count"
	hdrPrior         = "x-herald-deliveries"
)

// deliveries is how many times a message with headers h has been delivered,
// this time included.
func deliveries(h amqp.Table) int {
	return headerInt(h[hdrPrior]) + headerInt(h[hdrDeliveryCount]) + 1
}

func headerInt(v any) int {
	switch n := v.(type) {
	case int64:
		return int(max(n, 0))
	case int32:
		return int(max(n, 0))
	case int:
		return max(n, 0)
	case string:
		i, _ := strconv.Atoi(n)
		return max(i, 0)
	}
	return 0
}

// headerString is a header value as metadata: strings as they are, other
// AMQP field values (a foreign publisher's) printed.
func headerString(v any) string {
	switch s := v.(type) {
	case string:
		return s
	case []byte:
		return string(s)
	case time.Time:
		return s.UTC().Format(time.RFC3339Nano)
	}
	return fmt.Sprint(v)
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// shutdown acks the handed-out messages that were acked and gives every other
// delivery back to the queue at once, by closing the channel.
func (p *pump) shutdown() {
	if p.ch == nil {
		return
	}
	if p.cur != nil {
		select {
		case <-p.cur.Acked():
			p.ack(p.curH)
		default:
		}
	}
	for wm, h := range p.win.Held {
		select {
		case <-wm.Acked():
			p.ack(h)
		default:
		}
	}
	clear(p.win.Held)
	_ = p.ch.Close() // the broker requeues every unacknowledged delivery
	p.ch = nil
}
