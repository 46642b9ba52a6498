package kafka

import (
	"context"

	"github.com/ThreeDotsLabs/watermill/message"
)

// An outlet is one Subscribe call's channel on a consumer: up to window
// messages handed out and not settled.
type outlet struct {
	c     *consumer
	ctx   context.Context
	ch    chan *message.Message
	slots chan struct{} // a token per message handed out and not settled
	watch chan *rec     // handed out, for the watchers
}

// attach opens an outlet with window on c; false if c has stopped.
func (c *consumer) attach(ctx context.Context, window int) (<-chan *message.Message, bool) {
	o := &outlet{c: c, ctx: ctx, ch: make(chan *message.Message),
		slots: make(chan struct{}, window), watch: make(chan *rec, window)}
	c.wg.Add(1 + window)
	select {
	case c.attachCh <- o:
	case <-c.stopped:
		c.wg.Add(-1 - window)
		return nil, false
	}
	go func() {
		defer c.wg.Done()
		o.forward()
	}()
	for range window {
		go func() {
			defer c.wg.Done()
			o.watchSettled()
		}()
	}
	return o.ch, true
}

// forward hands records to the channel while the outlet has room, until its
// ctx ends or the consumer stops.
func (o *outlet) forward() {
	c := o.c
	defer func() {
		close(o.ch)
		close(o.watch)
		select {
		case c.detachCh <- o:
		case <-c.stopped:
		}
	}()
	for {
		select {
		case o.slots <- struct{}{}:
		case <-o.ctx.Done():
			return
		case <-c.done:
			return
		}
		var r *rec
		select {
		case r = <-c.ready:
		case <-o.ctx.Done():
			return
		case <-c.done:
			return
		}
		msg := r.msg
		msg.SetContext(o.ctx)
		select {
		case o.ch <- msg:
			o.watch <- r // never blocks: a slot is held for it
		case <-o.ctx.Done():
			o.report(settlement{r: r, returned: true})
			return
		case <-c.done:
			return
		}
	}
}

// watchSettled reports the Ack or Nack of each message handed out.
func (o *outlet) watchSettled() {
	c := o.c
	for r := range o.watch {
		msg := r.msg
		var st settlement
		select {
		case <-msg.Acked():
			st = settlement{r: r, acked: true}
		case <-msg.Nacked():
			st = settlement{r: r, ctxEnded: msg.Context().Err() != nil}
		case <-c.done:
			return
		}
		o.report(st)
		<-o.slots
	}
}

func (o *outlet) report(st settlement) {
	select {
	case o.c.settled <- st:
	case <-o.c.done:
	}
}
