package nats

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

// Subscriber returns a watermill subscriber that consumes as the handler
// handlerName. Its Subscribe(ctx, topic) creates (or reuses) the durable
// consumer of (handlerName, topic) and returns a channel of its messages;
// with partitions on (Config.Partitions), also the consumer of topic's keyed
// partitions, whose messages come on the same channel (so up to one of each
// is handed out at a time). SubscribeKeyed, for a handler ordering by key,
// consumes each partition on its own instead (see [Config.Partitions]).
//
//   - Every handler name gets every event of its topic; the Subscribe calls of
//     one name, in this process or others, share (compete for) its events;
//     events published while no process of the name runs wait for it. A new
//     name starts with the events published after its consumer is created.
//   - Each channel gives one message at a time and the next only after the
//     previous one is acked or nacked (watermill's contract), unless it
//     was opened with SubscribeWindow(ctx, topic, n): then up to n at a time, in stream
//     order, each settled whenever its receiver acks or nacks it. Ack acks the
//     event on the server; Nack redelivers it after the delay the bus asked
//     for ([transport.KeyRedeliveryDelay]) or else after NakDelay, doubling
//     with each delivery up to MaxNakDelay, or at once if the message's
//     context (the Subscribe ctx) has ended, i.e. on shutdown. The server
//     keeps the event meanwhile: nothing of the process waits for it.
//   - A received message has UUID = its Nats-Msg-Id (or Herald-Id) header,
//     every header as metadata except Nats-* ones, [transport.KeyID] = its
//     Nats-Msg-Id when it has no Herald-Id header, and [transport.KeyDeliveryCount] =
//     the number of deliveries to this handler. Its context is Subscribe's ctx.
//   - While the transport holds an event (prefetched or being handled), it
//     sends progress acks every third of the consumer's AckWait (see
//     Config.AckWait), so the server never redelivers it to another worker
//     while it is handled.
//   - A consumer that disappears (deleted by an operator or a tool, or with
//     its stream) is created again from where the handler was (logged at
//     Warn): from the oldest event this process had received and not
//     acknowledged, or after the last it acknowledged, or, if the stream was
//     created again, from the first event it holds. The events being handled
//     then may come again; none stored in the gap is skipped.
//
// The channel closes when ctx ends or the subscriber closes. Close stops
// consuming, nacks the events fetched and not yet handled (they come back at
// once, to any process), and waits for its goroutines. It never closes or
// drains the connection (watermill-nats's does). Subscriber fails with
// [transport.ErrClosed] on a closed transport.
func (t *Transport) Subscriber(handlerName string) (message.Subscriber, error) {
	if err := validSubject(handlerName); err != nil {
		return nil, fmt.Errorf("herald/nats: handler name: %w: %w", transport.ErrInvalidName, err)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	s := &subscriber{t: t, handler: handlerName, consumers: map[string]jetstream.Consumer{}}
	t.subs[s] = struct{}{}
	return s, nil
}

type subscriber struct {
	t       *Transport
	handler string
	from    *startFrom // where a new consumer of an event topic starts (SubscriberFrom); nil: new events

	feeds     adapterkit.Feeds // the pumps
	mu        sync.Mutex
	consumers map[string]jetstream.Consumer // by topic
	checked   sync.Map                      // topics whose other-mode consumers were looked for (checkMode)
}

func (s *subscriber) Subscribe(ctx context.Context, topic string) (<-chan *message.Message, error) {
	return s.SubscribeWindow(ctx, topic, 1)
}

var _ transport.WindowSubscriber = (*subscriber)(nil)

// SubscribeWindow is Subscribe with up to window messages handed out before
// they are settled (transport.WindowSubscriber), in stream order.
func (s *subscriber) SubscribeWindow(ctx context.Context, topic string, window int) (<-chan *message.Message, error) {
	if err := validSubject(topic); err != nil {
		return nil, fmt.Errorf("herald/nats: topic: %w: %w", transport.ErrInvalidName, err)
	}
	ch, err := s.open(ctx, s.t.unkeyedFeeds(topic, window))
	if err == nil {
		s.checkMode(ctx, topic, false)
	}
	return ch, err
}

// open starts a pump per feed, each on the consumer of its topic, all
// handing out on one channel, which closes once every pump has returned.
func (s *subscriber) open(ctx context.Context, feeds []feed) (<-chan *message.Message, error) {
	if err := s.t.prepare(ctx); err != nil {
		return nil, err
	}
	conss := make([]jetstream.Consumer, len(feeds))
	for i, f := range feeds {
		s.mu.Lock()
		cons, ok := s.consumers[f.topic]
		s.mu.Unlock()
		if !ok {
			// Not under s.mu: preparing the streams again takes it.
			var err error
			if cons, _, err = s.consumer(ctx, f.topic); err != nil {
				return nil, err
			}
		}
		conss[i] = cons
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(chan *message.Message)
	feeders := new(atomic.Int32)
	feeders.Store(int32(len(feeds)))
	runs := make([]func(), len(feeds))
	for i, f := range feeds {
		pos := s.t.position(consumerName(s.handler, f.topic))
		p := &pump{s: s, topic: f.topic, ctx: ctx, out: out, feeders: feeders, pos: pos,
			seqs: map[*nats.Msg]tracked{}}
		p.use(conss[i], pos.current())
		p.win.Open(f.window)
		runs[i] = p.run
	}
	if err := s.feeds.Start(runs...); err != nil {
		return nil, err
	}
	for i, f := range feeds {
		s.consumers[f.topic] = conss[i]
	}
	return out, nil
}

// cache makes cons the consumer of topic that later Subscribe calls use.
func (s *subscriber) cache(topic string, cons jetstream.Consumer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.feeds.Closed() {
		s.consumers[topic] = cons
	}
}

// consumer is ensureConsumer, preparing the streams again and retrying once
// if the events stream is missing.
func (s *subscriber) consumer(ctx context.Context, topic string) (cons jetstream.Consumer, epoch uint64, err error) {
	err = s.t.withStreams(ctx, func() error {
		var err error
		cons, epoch, err = s.ensureConsumer(ctx, topic)
		return err
	})
	return cons, epoch, err
}

// ensureConsumer finds the durable consumer of (s.handler, topic), or
// creates it, and returns it with the epoch of its stream (see position).
//
// A consumer that exists keeps its position and deliver policy; its settings
// are brought to the Config's, except that its AckWait is only ever raised:
// other processes of the handler may pace their progress acks by the
// current one, so lowering it could let the server redeliver an event they
// are handling. Each process paces its progress acks by the AckWait it
// reads back, and logs at Warn when that is not its Config's.
//
// A consumer that does not exist is created with DeliverNew for a handler
// new to this transport, and otherwise again from the handler's position
// (logged at Warn): it was deleted, or its stream was.
func (s *subscriber) ensureConsumer(ctx context.Context, topic string) (jetstream.Consumer, uint64, error) {
	t := s.t
	name := consumerName(s.handler, topic)
	pos := t.position(name)
	c := t.cfg
	want := jetstream.ConsumerConfig{
		Durable:       name,
		Description:   describe(s.handler, topic),
		DeliverPolicy: jetstream.DeliverNewPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       c.AckWait,
		MaxDeliver:    c.MaxDeliver,
		MaxAckPending: t.maxAckPending(topic),
		FilterSubject: t.Subject(topic),
	}
	fail := func(err error) (jetstream.Consumer, uint64, error) {
		return nil, 0, fmt.Errorf("herald/nats: consumer %q of handler %q on %q: %w", name, s.handler, t.Subject(topic), err)
	}
	events := t.eventsStream()
	for range 3 {
		si, err := events.Info(ctx)
		if err != nil {
			return fail(err)
		}
		cons, err := events.Consumer(ctx, name)
		switch {
		case err == nil:
			cons, err = s.updateConsumer(ctx, cons, want)
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			cfg := want
			policy, start, why := pos.resume(si)
			cfg.DeliverPolicy, cfg.OptStartSeq = policy, start
			if policy == jetstream.DeliverNewPolicy {
				// New to this transport: where the bus asked it to start
				// (WithStartFrom), once per topic.
				cfg.DeliverPolicy, cfg.OptStartTime = s.startFrom(topic)
			}
			cons, err = events.CreateConsumer(ctx, cfg)
			if errors.Is(err, jetstream.ErrConsumerExists) || errors.Is(err, jetstream.ErrConsumerNameAlreadyInUse) {
				continue // another process created it meanwhile
			}
			if err == nil && policy != jetstream.DeliverNewPolicy {
				t.cfg.Logger.Warn("consumer was missing (deleted, or its stream was); created again",
					zap.String("consumer", name), zap.String("handler", s.handler), zap.String("topic", topic),
					zap.Stringer("deliver_policy", policy), zap.Uint64("start_seq", start), zap.String("why", why),
					zap.Uint64("stream_first_seq", si.State.FirstSeq), zap.Uint64("stream_last_seq", si.State.LastSeq))
			}
		}
		if err != nil {
			return fail(err)
		}
		ci := cons.CachedInfo()
		epoch := pos.sync(ci, si.Created)
		if aw := ci.Config.AckWait; aw != c.AckWait && pos.warnAckWait(aw) {
			t.cfg.Logger.Warn("the consumer's AckWait is not Config.AckWait: progress acks are paced by the consumer's",
				zap.String("consumer", name), zap.String("handler", s.handler), zap.String("topic", topic),
				zap.Duration("consumer_ack_wait", aw), zap.Duration("config_ack_wait", c.AckWait),
				zap.String("hint", "the transport raises a consumer's AckWait, never lowers it (other processes pace by it); "+
					"to lower it, once every process has the new AckWait, delete the consumer while they run: "+
					"it is created again from where the handler was"))
		}
		return cons, epoch, nil
	}
	return fail(errors.New("created and deleted by others meanwhile, three times"))
}

// updateConsumer brings the settings of an existing consumer to want's,
// keeping its deliver policy and start, and raising its AckWait only.
func (s *subscriber) updateConsumer(ctx context.Context, cons jetstream.Consumer, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cur := cons.CachedInfo().Config
	upd := cur
	upd.Description = want.Description
	upd.AckWait = max(cur.AckWait, want.AckWait)
	upd.MaxDeliver = want.MaxDeliver
	upd.MaxAckPending = want.MaxAckPending
	upd.FilterSubject = want.FilterSubject
	if upd.Description == cur.Description && upd.AckWait == cur.AckWait && upd.MaxDeliver == cur.MaxDeliver &&
		upd.MaxAckPending == cur.MaxAckPending && upd.FilterSubject == cur.FilterSubject {
		return cons, nil
	}
	return s.t.eventsStream().UpdateConsumer(ctx, upd)
}

func (s *subscriber) Close() error {
	s.feeds.Close()
	adapterkit.Remove(&s.t.mu, s.t.subs, s)
	return nil
}

// pump feeds one Subscribe channel from the consumer. It pulls up to
// Prefetch messages ahead (a new pull request when half the room is free),
// hands them out one at a time, acks or nacks each as the receiver does, and
// progress-acks every message it holds. It is the only goroutine touching its
// messages, so none needs a lock; there is one per Subscribe call.
type pump struct {
	s     *subscriber
	topic string
	ctx   context.Context
	out   chan *message.Message // shared with the other pumps of one Subscribe call
	// feeders counts the pumps of out still running: the last closes it.
	feeders *atomic.Int32

	// The consumer pulled from, and what the pump knows of it.
	cons        jetstream.Consumer
	consCreated time.Time     // its creation time: another one is a new consumer
	ackWait     time.Duration // its AckWait, as read back: the pace of progress acks
	progress    *time.Ticker  // every ackWait/3
	pos         *position
	epoch       uint64                // of pos, for the messages received now
	seqs        map[*nats.Msg]tracked // of every message held
	lostAt      time.Time             // when ensure was set

	queue []*nats.Msg // pulled, not handed out, oldest first
	cur   *nats.Msg   // handed out, waiting for Ack or Nack (one at a time)
	curWM *message.Message

	// With SubscribeWindow(n > 1): up to n messages handed out at once,
	// each watched by a goroutine that reports its Ack or Nack.
	win    adapterkit.Window[*nats.Msg]
	nextWM *message.Message // queue[0] as a watermill message, once built

	inbox       string
	subject     string // of the pull requests
	sub         *nats.Subscription
	ch          chan *nats.Msg  // the inbox
	outstanding int             // messages requested and not yet received
	gen         <-chan struct{} // closed when the connection comes back
	recv        uint64          // messages received on the inbox
	lastRecv    uint64          // recv at the last heartbeat check
	silent      int             // heartbeat checks without a message
	fetchFails  int
	retry       *time.Timer
	retryC      <-chan time.Time
	ensure      bool // recreate the consumer before the next pull
}

// tracked is where a held message is in the stream, and how many times it
// was delivered: its reply subject parsed once, when received.
type tracked struct{ seq, epoch, delivered uint64 }

// use makes cons, of epoch, the consumer the pump pulls from. If it is
// another consumer than before (created again), the queued messages it will
// deliver again from its start sequence are dropped, so as not to be
// handled twice: their acks would go to the old consumer anyway.
func (p *pump) use(cons jetstream.Consumer, epoch uint64) {
	ci := cons.CachedInfo()
	if p.cons != nil && !ci.Created.Equal(p.consCreated) && ci.Config.DeliverPolicy == jetstream.DeliverByStartSequencePolicy {
		kept := p.queue[:0]
		for _, m := range p.queue {
			if tr, ok := p.seqs[m]; ok && tr.epoch == epoch && tr.seq >= ci.Config.OptStartSeq {
				delete(p.seqs, m)
				continue
			}
			kept = append(kept, m)
		}
		clear(p.queue[len(kept):])
		p.queue = kept
		p.nextWM = nil
	}
	p.cons, p.consCreated, p.epoch = cons, ci.Created, epoch
	if aw := ci.Config.AckWait; aw != p.ackWait {
		p.ackWait = aw
		if p.progress != nil {
			p.progress.Reset(progressEvery(aw))
		}
	}
}

// progressEvery is the progress-ack period for a consumer AckWait.
func progressEvery(ackWait time.Duration) time.Duration { return max(ackWait/3, time.Millisecond) }

// hold records that the pump now holds m, received from the consumer.
func (p *pump) hold(m *nats.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	p.seqs[m] = tracked{md.Sequence.Stream, p.epoch, md.NumDelivered}
	p.pos.delivered(md.Sequence.Stream, p.epoch)
}

// ack acks m and records it in the position.
func (p *pump) ack(m *nats.Msg) {
	p.reply(m, ackAck)
	if tr, ok := p.seqs[m]; ok {
		delete(p.seqs, m)
		p.pos.ack(tr.seq, tr.epoch)
	}
}

func (p *pump) run() {
	defer func() {
		if p.feeders.Add(-1) == 0 {
			close(p.out)
		}
	}()
	defer p.win.Stop()
	closing := p.s.feeds.Closing()
	t := p.s.t
	p.progress = time.NewTicker(progressEvery(p.ackWait))
	defer p.progress.Stop()
	defer func() {
		if p.retry != nil {
			p.retry.Stop()
		}
	}()
	heartbeat := time.NewTicker(pullHeartbeat)
	defer heartbeat.Stop()
	refill := max(1, t.cfg.Prefetch/2)
	for fast := 0; ; {
		if p.retryC == nil {
			if room := t.cfg.Prefetch - len(p.queue) - p.held() - p.outstanding; room >= refill {
				p.startPull(room)
			}
		}
		var out chan<- *message.Message
		if p.win.Free(p.cur == nil) && len(p.queue) > 0 {
			if p.nextWM == nil {
				p.nextWM = p.message(p.queue[0])
			}
			out = p.out
		}
		var acked, nacked <-chan struct{}
		if p.curWM != nil {
			acked, nacked = p.curWM.Acked(), p.curWM.Nacked()
		}
		// What is ready now is done without the full select below, which
		// costs with every case it has (most of the pump's own CPU when
		// events stream); the full select still runs at least every
		// fastSteps turns, so timers and shutdown are never starved.
		if fast < fastSteps && p.tryStep(out, acked, nacked) {
			fast++
			continue
		}
		fast = 0
		var reconnected <-chan struct{}
		if p.outstanding > 0 {
			reconnected = p.gen
		}
		select {
		case out <- p.nextWM:
			p.handedOut()
		case st := <-p.win.Settled:
			p.win.Settle(st, p.ack, p.nak)
		case <-acked:
			p.ack(p.cur)
			p.cur, p.curWM = nil, nil
		case <-nacked:
			p.nak(p.cur, p.curWM)
			p.cur, p.curWM = nil, nil
		case m := <-p.ch:
			p.received(m)
		case <-heartbeat.C:
			p.checkHeartbeat()
		case <-reconnected:
			// The server forgot the requests of the old connection.
			p.outstanding = 0
		case <-p.retryC:
			p.retryC = nil
		case <-p.progress.C:
			for _, m := range p.queue {
				p.reply(m, ackProgress)
			}
			if p.cur != nil {
				p.reply(p.cur, ackProgress)
			}
			for _, m := range p.win.Held {
				p.reply(m, ackProgress)
			}
		case <-p.ctx.Done():
			p.shutdown()
			return
		case <-closing:
			p.shutdown()
			return
		}
	}
}

// fastSteps bounds the pump's turns in a row taken by tryStep.
const fastSteps = 8

// tryStep does one thing that is ready without waiting, in this order: the
// handed-out event's ack or nack, handing out the next event (out is nil
// when none can be), a message received on the inbox. It reports whether it
// did one.
func (p *pump) tryStep(out chan<- *message.Message, acked, nacked <-chan struct{}) bool {
	if acked != nil {
		select {
		case <-acked:
			p.ack(p.cur)
			p.cur, p.curWM = nil, nil
			return true
		default:
		}
		select {
		case <-nacked:
			p.nak(p.cur, p.curWM)
			p.cur, p.curWM = nil, nil
			return true
		default:
		}
	}
	if out != nil {
		select {
		case out <- p.nextWM:
			p.handedOut()
			return true
		default:
		}
	}
	select {
	case m := <-p.ch:
		p.received(m)
		return true
	default:
	}
	return false
}

// handedOut records that queue[0] (as nextWM) was handed out.
func (p *pump) handedOut() {
	if p.win.Held != nil {
		wm := p.nextWM
		p.win.Held[wm] = p.queue[0]
		p.s.feeds.Go(func() { p.win.Watch(wm) })
	} else {
		p.cur, p.curWM = p.queue[0], p.nextWM
	}
	p.nextWM = nil
	p.queue[0] = nil
	p.queue = p.queue[1:]
}

func (p *pump) held() int {
	if p.cur != nil {
		return 1 + len(p.win.Held)
	}
	return len(p.win.Held)
}

// Ack bodies (JetStream's ack protocol).
var (
	ackAck      = []byte("+ACK")
	ackNak      = []byte("-NAK")
	ackProgress = []byte("+WPI")
)

// reply sends an ack, nak or progress to the server. The transport's
// connection sends it (not the message's subscription, which may be closed by
// then); it is fire-and-forget: a lost ack means a redelivery, never a loss.
func (p *pump) reply(m *nats.Msg, body []byte) {
	if err := p.s.t.nc.Publish(m.Reply, body); err != nil && !bytes.Equal(body, ackProgress) {
		p.s.t.cfg.Logger.Warn("ack failed; the event will be redelivered", zap.String("handler", p.s.handler),
			zap.ByteString("ack", body), zap.Error(err))
	}
}

// nak nacks m: at once on shutdown (another process takes it), otherwise
// after a delay growing with its deliveries.
func (p *pump) nak(m *nats.Msg, wm *message.Message) {
	delete(p.seqs, m) // still unacknowledged in the position: redelivered
	if wm.Context().Err() != nil {
		p.reply(m, ackNak)
		return
	}
	p.reply(m, fmt.Appendf(nil, `-NAK {"delay": %d}`, p.nakDelay(wm).Nanoseconds()))
}

func (p *pump) nakDelay(wm *message.Message) time.Duration {
	if d, ok := transport.RedeliveryDelay(wm); ok {
		return d // the bus's delayed retry
	}
	c := p.s.t.cfg
	n, _ := strconv.Atoi(wm.Metadata.Get(transport.KeyDeliveryCount))
	d := c.NakDelay
	for i := 1; i < n && d < c.MaxNakDelay; i++ {
		d *= 2
	}
	return min(d, c.MaxNakDelay)
}

// message converts a pulled message to a watermill one.
func (p *pump) message(m *nats.Msg) *message.Message {
	msgID, heraldID := m.Header.Get(jetstream.MsgIDHeader), m.Header.Get(transport.KeyID)
	id := msgID
	if id == "" {
		id = heraldID
	}
	var delivered uint64 = 1
	if tr, ok := p.seqs[m]; ok { // its reply subject parsed (hold)
		delivered = tr.delivered
		if id == "" {
			id = p.s.t.cfg.StreamName + "-" + strconv.FormatUint(tr.seq, 10)
		}
	}
	wm := message.NewMessage(id, m.Data)
	for k, v := range m.Header {
		if len(v) > 0 && !reservedKey(k) {
			wm.Metadata[k] = v[0]
		}
	}
	if heraldID == "" && msgID != "" { // see restoreID
		wm.Metadata[transport.KeyID] = msgID
	}
	wm.Metadata[transport.KeyDeliveryCount] = strconv.FormatUint(delivered, 10)
	wm.SetContext(p.ctx)
	return wm
}

// restoreID sets the Herald-Id metadata of a message received with headers h
// to its Nats-Msg-Id when h has no Herald-Id: Herald leaves Herald-Id out
// when it equals the Nats-Msg-Id (see natsMsg), and a foreign publisher may
// send only the Nats-Msg-Id.
func restoreID(h nats.Header, md message.Metadata) {
	if h.Get(transport.KeyID) != "" {
		return
	}
	if id := h.Get(jetstream.MsgIDHeader); id != "" {
		md[transport.KeyID] = id
	}
}

// shutdown ends the pull requests and gives back every message held: those
// not handed out are nacked (redelivered at once), the one handed out is
// acked or nacked as its receiver said, or nacked if it said nothing yet.
func (p *pump) shutdown() {
	p.closeInbox()
	for _, m := range p.queue {
		p.reply(m, ackNak)
	}
	p.queue = nil
	if p.cur != nil {
		select {
		case <-p.curWM.Acked():
			p.ack(p.cur)
		default:
			p.reply(p.cur, ackNak)
		}
	}
	for wm, m := range p.win.Held {
		select {
		case <-wm.Acked():
			p.ack(m)
		default:
			p.reply(m, ackNak)
		}
	}
	clear(p.win.Held)
	clear(p.seqs)
}
