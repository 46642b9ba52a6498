package nats

import (
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// position is what this process knows of where a handler's consumer is in
// the events stream, so that the consumer, if it disappears (deleted by an
// operator or a tool, or with its stream), is created again from there
// rather than from the events published after (DeliverNew), which would
// skip every event stored in the gap.
//
// It holds the server's ack floor as last read (every sequence at or below
// it was acknowledged), the highest sequence this process acknowledged, and
// the sequences delivered to this process and not acknowledged (handed out,
// prefetched, or nacked for a later redelivery). The consumer is created
// again from the lowest of those, or after the highest acknowledged: the
// events this process was handling come again (a duplicate, never a loss).
// Other processes of the handler keep their own position; the first to
// notice creates the consumer from its own.
//
// Sequences belong to one incarnation of the stream (its creation time):
// if the stream was deleted and created again, the consumer starts at the
// first event the new stream holds.
type position struct {
	mu      sync.Mutex
	known   bool      // the transport created or found this consumer
	created time.Time // creation time of the stream the sequences belong to
	epoch   uint64    // incremented with created: older sequences are ignored
	floor   uint64    // the consumer's ack floor when last read
	acked   uint64    // the highest sequence this process acknowledged
	unacked map[uint64]struct{}
	limit   int           // of unacked: MaxAckPending bounds the consumer's unacknowledged events
	warned  time.Duration // the consumer AckWait last warned about
}

func newPosition(limit int) *position {
	return &position{unacked: map[uint64]struct{}{}, limit: max(limit, 1)}
}

// sync records the consumer found or created, of the stream created at
// streamCreated, and returns the epoch its sequences belong to.
func (p *position) sync(ci *jetstream.ConsumerInfo, streamCreated time.Time) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.known || !p.created.Equal(streamCreated) {
		p.known, p.created = true, streamCreated
		p.epoch++
		p.acked = 0
		clear(p.unacked)
		p.floor = ci.AckFloor.Stream
		return p.epoch
	}
	p.floor = max(p.floor, ci.AckFloor.Stream)
	for seq := range p.unacked {
		if seq <= p.floor {
			delete(p.unacked, seq) // acknowledged, by another process
		}
	}
	return p.epoch
}

// current returns the epoch of the sequences delivered now.
func (p *position) current() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.epoch
}

// delivered records that seq (of epoch) was delivered to this process.
func (p *position) delivered(seq, epoch uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch != p.epoch || seq <= p.floor {
		return
	}
	p.unacked[seq] = struct{}{}
	if len(p.unacked) > p.limit {
		// More than the consumer lets be unacknowledged: some were
		// acknowledged elsewhere (nacked here, then handled by another
		// process). Forget the oldest.
		lowest := seq
		for s := range p.unacked {
			lowest = min(lowest, s)
		}
		delete(p.unacked, lowest)
	}
}

// acked records that this process acknowledged seq (of epoch).
func (p *position) ack(seq, epoch uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if epoch != p.epoch {
		return
	}
	delete(p.unacked, seq)
	p.acked = max(p.acked, seq)
}

// resume says how to create the missing consumer again, given the stream's
// state: deliver policy and start sequence, and why.
func (p *position) resume(si *jetstream.StreamInfo) (jetstream.DeliverPolicy, uint64, string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch {
	case !p.known:
		return jetstream.DeliverNewPolicy, 0, "new handler"
	case !si.Created.Equal(p.created):
		return jetstream.DeliverAllPolicy, 0, "the stream was created again: every event it holds"
	}
	start := max(p.floor, p.acked) + 1
	for seq := range p.unacked {
		start = min(start, seq)
	}
	if start > si.State.LastSeq+1 {
		return jetstream.DeliverAllPolicy, 0, "the stream is behind the handler's position: every event it holds"
	}
	return jetstream.DeliverByStartSequencePolicy, start, "from the handler's position"
}

// warnAckWait reports whether a consumer AckWait of d should be warned
// about (not the one warned about last).
func (p *position) warnAckWait(d time.Duration) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.warned == d {
		return false
	}
	p.warned = d
	return true
}
