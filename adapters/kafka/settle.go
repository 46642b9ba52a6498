package kafka

import (
	"context"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/transport"
)

// What a consumer does with a handed-out record once it is acked or
// nacked: see consumer.

// current reports whether r belongs to a partition the consumer still holds
// (or is giving up) as it was when r was polled.
func (c *consumer) current(r *rec) bool { return c.parts[r.r.Partition] == r.ps }

// settle applies a handed-out record's outcome.
func (c *consumer) settle(st settlement) {
	r := st.r
	if r.state != out || !c.current(r) {
		return // its partition was revoked meanwhile: its new owner has it
	}
	if r.ps.revoking {
		// Being given up: an ack moves the commit point; anything else
		// leaves the record to the partition's next owner.
		if st.acked {
			c.finish(r)
		} else {
			r.state, r.msg = queued, nil
		}
		return
	}
	switch {
	case st.returned:
		c.requeue(r, false, time.Time{})
	case st.acked:
		c.finish(r)
	case st.ctxEnded || c.stopping:
		// Shutdown: keep it uncommitted, for this consumer or the next owner.
		c.requeue(r, true, time.Time{})
	case r.deliveries < c.t.cfg.LocalRedeliveries:
		c.requeue(r, true, time.Now().Add(c.nakDelay(r.deliveries+1)))
	default:
		c.copyForRedelivery(r)
	}
}

// requeue puts r back: at the head of its partition's queue when due is
// zero, else among the delayed records.
func (c *consumer) requeue(r *rec, delivered bool, due time.Time) {
	if delivered {
		r.deliveries++
	}
	r.state, r.msg, r.due = queued, nil, due
	c.queued++
	if !due.IsZero() {
		c.delayed = append(c.delayed, r)
		return
	}
	ps := r.ps
	ps.queue = append([]*rec{r}, ps.queue...)
}

// finish marks r settled.
func (c *consumer) finish(r *rec) {
	delete(r.ps.pending, r.r.Offset)
	c.dirty = true
}

// nakDelay is the redelivery delay after the deliveries-th delivery.
func (c *consumer) nakDelay(deliveries int) time.Duration {
	cfg := c.t.cfg
	d := cfg.NakDelay
	for i := 1; i < deliveries && d < cfg.MaxNakDelay; i++ {
		d *= 2
	}
	return min(d, cfg.MaxNakDelay)
}

// copyForRedelivery produces a copy of nacked r to the handler's replay
// topic, due after the nack delay; r is settled once the copy is stored.
func (c *consumer) copyForRedelivery(r *rec) {
	r.state = copying
	deliveries := r.deliveries + 1
	cp := &kgo.Record{
		Topic: c.t.Topic(transport.ReplayTopic(c.s.handler)),
		Key:   r.r.Key,
		Value: r.r.Value,
	}
	for _, h := range r.r.Headers {
		if !reservedKey(h.Key) {
			cp.Headers = append(cp.Headers, h)
		}
	}
	notBefore := time.Now().Add(c.nakDelay(deliveries)).UnixMilli()
	cp.Headers = append(cp.Headers,
		kgo.RecordHeader{Key: hdrDeliveries, Value: []byte(strconv.Itoa(deliveries))},
		kgo.RecordHeader{Key: hdrNotBefore, Value: []byte(strconv.FormatInt(notBefore, 10))})
	ctx, cancel := context.WithTimeout(context.Background(), c.t.cfg.ProduceTimeout)
	c.t.cl.Produce(ctx, cp, func(_ *kgo.Record, err error) {
		cancel()
		c.copyMu.Lock()
		c.copies = append(c.copies, copyResult{r: r, err: err})
		c.copyMu.Unlock()
		select {
		case c.copySignal <- struct{}{}:
		default:
		}
	})
}

// copied applies the results of redelivery copies.
func (c *consumer) copied() {
	c.copyMu.Lock()
	res := c.copies
	c.copies = nil
	c.copyMu.Unlock()
	for _, cr := range res {
		r := cr.r
		if r.state != copying || !c.current(r) {
			continue
		}
		if cr.err == nil {
			c.finish(r)
			continue
		}
		if r.ps.revoking {
			r.state = queued // the partition's next owner delivers it
			continue
		}
		// The copy failed (the cluster is unreachable?): the consumer keeps
		// the record and delivers it again itself after the delay.
		c.log.Warn("could not store a nacked event for redelivery; redelivering it from this process",
			zap.Int64("offset", r.r.Offset), zap.Error(cr.err))
		c.requeue(r, true, time.Now().Add(c.nakDelay(r.deliveries+1)))
	}
}
