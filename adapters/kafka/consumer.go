package kafka

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/transport"
)

// A consumer is one group member: the handler's consumption of one topic in
// this process. Its goroutines:
//
//   - run (one): owns every record and all the state below, hands records
//     out, settles them, commits offsets, answers rebalances;
//   - poll (one): polls the client when run asks for records, and lets a
//     rebalance proceed (AllowRebalance) once run has taken them, so that a
//     rebalance never overtakes records in transit (BlockRebalanceOnPoll);
//   - per Subscribe call (an outlet): a forwarder that takes a record when
//     the outlet has room and hands it to the channel, and window watchers
//     that wait for the handed-out messages' Ack or Nack.
//
// The commit point of a partition is its lowest offset not settled (polled
// and waiting, handed out, or being copied for a redelivery), or the offset
// after the last polled record when every one is settled. Only that is ever
// committed: records settled out of order wait for the ones before them.
type consumer struct {
	s     *subscriber
	t     *Transport
	topic string // Herald topic
	kt    string // Kafka topic
	cl    *kgo.Client

	attachCh   chan *outlet
	detachCh   chan *outlet
	ready      chan *rec // run -> forwarders
	settled    chan settlement
	want       chan int           // run -> poll: how many records
	polled     chan []*kgo.Record // poll -> run
	revokes    chan *revokeReq
	commitReq  chan map[int32]kgo.EpochOffset // run -> commit; capacity 1, one commit at a time
	committed  chan commitResult              // commit -> run; capacity 1
	commitDone chan struct{}                  // closed when commit returns

	copyMu     sync.Mutex
	copies     []copyResult  // produce results of redelivery copies
	copySignal chan struct{} // capacity 1: copies is not empty

	pollCtx    context.Context
	pollCancel context.CancelFunc
	pollDone   chan struct{}

	quit     chan struct{} // closed by Close: stop
	quitOnce sync.Once
	stopped  chan struct{} // closed by run when it stops: no more attaches
	done     chan struct{} // closed by run after its last commit: every goroutine ends
	wg       sync.WaitGroup

	// run's state
	parts      map[int32]*partState
	order      []int32 // partitions, for a round robin of hand-outs
	rr         int
	delayed    []*rec // nacked, redelivered from here when due, before the queues
	headIdx    int    // index in delayed of the record head returned, or -1
	queued     int    // records polled (or requeued) and not handed out
	wantOut    bool
	outlets    int
	stopping   bool
	dirty      bool // something settled since the last commit
	committing bool
	lastCommit time.Time
	revoking   []*revokeReq
	log        *zap.Logger
}

// rec is a polled record while the consumer holds it.
type rec struct {
	r          *kgo.Record
	ps         *partState // its partition's state when polled; stale after a revoke
	deliveries int        // earlier deliveries of the event to the handler
	due        time.Time  // not handed out before
	state      recState
	msg        *message.Message // the current delivery
}

type recState int

const (
	queued  recState = iota // polled (or given back), waiting for a worker
	out                     // handed out, waiting for Ack or Nack
	copying                 // nacked, its redelivery copy being produced
)

type partState struct {
	p         int32
	queue     []*rec
	pending   map[int64]*rec // every record not settled, by offset
	next      int64          // offset after the last polled
	committed int64          // last committed, -1 if none by this member
	revoking  bool
}

// point is the partition's commit point, -1 if none.
func (ps *partState) point() int64 {
	lo := ps.next
	for off := range ps.pending {
		lo = min(lo, off)
	}
	return lo
}

type settlement struct {
	r        *rec
	acked    bool
	returned bool // taken by a forwarder whose channel closed: never delivered
	ctxEnded bool // nacked with its context ended: shutdown
}

type revokeReq struct {
	parts    []int32
	lost     bool
	deadline time.Time
	reply    chan map[int32]kgo.EpochOffset
}

type copyResult struct {
	r   *rec
	err error
}

type commitResult struct {
	offs map[int32]kgo.EpochOffset
	resp *kmsg.OffsetCommitResponse
	err  error
}

func newConsumer(s *subscriber, topic, kt string) *consumer {
	c := &consumer{s: s, t: s.t, topic: topic, kt: kt,
		attachCh: make(chan *outlet), detachCh: make(chan *outlet), ready: make(chan *rec),
		settled: make(chan settlement), want: make(chan int, 1), polled: make(chan []*kgo.Record),
		revokes: make(chan *revokeReq), commitReq: make(chan map[int32]kgo.EpochOffset, 1),
		committed: make(chan commitResult, 1), commitDone: make(chan struct{}), copySignal: make(chan struct{}, 1),
		pollDone: make(chan struct{}), quit: make(chan struct{}), stopped: make(chan struct{}), done: make(chan struct{}),
		parts: map[int32]*partState{},
		log:   s.t.cfg.Logger.With(zap.String("handler", s.handler), zap.String("topic", kt)),
	}
	c.pollCtx, c.pollCancel = context.WithCancel(context.Background())
	return c
}

func (c *consumer) start() {
	c.wg.Add(3)
	go func() {
		defer c.wg.Done()
		c.run()
	}()
	go func() {
		defer c.wg.Done()
		c.poll()
	}()
	go func() {
		defer c.wg.Done()
		c.commit()
	}()
}

// poll polls the client for as many records as run asks for, hands them to
// run, and then lets a pending rebalance proceed.
func (c *consumer) poll() {
	defer close(c.pollDone)
	fails := 0
	for {
		var n int
		select {
		case n = <-c.want:
		case <-c.pollCtx.Done():
			return
		}
		fs := c.cl.PollRecords(c.pollCtx, n)
		var recs []*kgo.Record
		var errs []error
		fs.EachPartition(func(p kgo.FetchTopicPartition) {
			if p.Err != nil {
				errs = append(errs, p.Err)
			}
			recs = append(recs, p.Records...)
		})
		select {
		case c.polled <- recs:
		case <-c.pollCtx.Done():
		}
		c.cl.AllowRebalance()
		if c.pollCtx.Err() != nil {
			return
		}
		if len(errs) > 0 && len(recs) == 0 {
			fails++
			if fails == 1 || fails%10 == 0 {
				c.log.Warn("kafka fetch failed; retrying", zap.Int("failures", fails), zap.Errors("errors", errs))
			}
			wait := time.NewTimer(min(100*time.Millisecond<<min(fails-1, 6), 5*time.Second))
			select {
			case <-wait.C:
			case <-c.pollCtx.Done():
				wait.Stop()
				return
			}
		} else {
			fails = 0
		}
	}
}

// run is the consumer's loop: see consumer.
func (c *consumer) run() {
	due := time.NewTimer(time.Hour)
	defer due.Stop()
	tick := time.NewTimer(time.Hour)
	defer tick.Stop()
	for {
		if !c.stopping && !c.wantOut && c.queued < c.t.cfg.Prefetch {
			c.want <- c.t.cfg.Prefetch - c.queued // never blocks: poll took the last one
			c.wantOut = true
		}
		now := time.Now()
		head := c.head(now, due)
		var ready chan<- *rec
		if head != nil {
			ready = c.ready
		}
		select {
		case ready <- head:
			c.handedOut(head)
		case st := <-c.settled:
			c.settle(st)
		case recs := <-c.polled:
			c.wantOut = false
			c.add(recs)
		case <-c.copySignal:
			c.copied()
		case res := <-c.committed:
			c.commitResult(res)
		case rq := <-c.revokes:
			c.revoke(rq)
		case <-c.attachCh:
			c.outlets++
		case <-c.detachCh:
			if c.outlets--; c.outlets == 0 {
				c.shutdown()
				return
			}
		case <-due.C:
		case <-tick.C:
		case <-c.quit:
			c.shutdown()
			return
		}
		c.checkRevokes(time.Now(), tick)
		c.maybeCommit(time.Now(), tick)
	}
}

// head returns the next record to hand out: the first due head of a
// partition queue, partitions taken in turn. It sets due to fire when the
// earliest head that is not due yet becomes due.
func (c *consumer) head(now time.Time, due *time.Timer) *rec {
	var next time.Time
	c.headIdx = -1
	for i, r := range c.delayed {
		if r.due.After(now) {
			if next.IsZero() || r.due.Before(next) {
				next = r.due
			}
			continue
		}
		if c.headIdx < 0 || r.due.Before(c.delayed[c.headIdx].due) {
			c.headIdx = i
		}
	}
	if c.headIdx >= 0 {
		r := c.delayed[c.headIdx]
		if r.msg == nil {
			r.msg = c.message(r)
		}
		return r
	}
	for i := range c.order {
		ps := c.parts[c.order[(c.rr+i)%len(c.order)]]
		if len(ps.queue) == 0 {
			continue
		}
		r := ps.queue[0]
		if r.due.After(now) {
			if next.IsZero() || r.due.Before(next) {
				next = r.due
			}
			continue
		}
		if r.msg == nil {
			r.msg = c.message(r)
		}
		return r
	}
	if !next.IsZero() {
		due.Reset(next.Sub(now))
	}
	return nil
}

func (c *consumer) handedOut(r *rec) {
	if c.headIdx >= 0 {
		c.delayed = append(c.delayed[:c.headIdx], c.delayed[c.headIdx+1:]...)
	} else {
		ps := r.ps
		ps.queue[0] = nil
		ps.queue = ps.queue[1:]
		c.rr++
	}
	c.queued--
	r.state = out
}

// message builds the watermill message of r's next delivery.
func (c *consumer) message(r *rec) *message.Message {
	id := ""
	for _, h := range r.r.Headers {
		if h.Key == transport.KeyID {
			id = string(h.Value)
		}
	}
	if id == "" {
		id = c.kt + "-" + strconv.Itoa(int(r.r.Partition)) + "-" + strconv.FormatInt(r.r.Offset, 10)
	}
	msg := message.NewMessage(id, r.r.Value)
	for _, h := range r.r.Headers {
		if _, dup := msg.Metadata[h.Key]; !dup && !reservedKey(h.Key) {
			msg.Metadata[h.Key] = string(h.Value)
		}
	}
	msg.Metadata[transport.KeyDeliveryCount] = strconv.Itoa(r.deliveries + 1)
	return msg
}

// add takes polled records in.
func (c *consumer) add(recs []*kgo.Record) {
	for _, kr := range recs {
		ps := c.parts[kr.Partition]
		if ps == nil {
			ps = &partState{p: kr.Partition, pending: map[int64]*rec{}, next: -1, committed: -1}
			c.parts[kr.Partition] = ps
			c.order = append(c.order, kr.Partition)
		}
		if kr.Offset < ps.next {
			continue // polled before: already held
		}
		r := &rec{r: kr, ps: ps}
		for _, h := range kr.Headers {
			switch h.Key {
			case hdrDeliveries:
				r.deliveries, _ = strconv.Atoi(string(h.Value))
			case hdrNotBefore:
				if ms, err := strconv.ParseInt(string(h.Value), 10, 64); err == nil {
					r.due = time.UnixMilli(ms)
				}
			}
		}
		ps.queue = append(ps.queue, r)
		ps.pending[kr.Offset] = r
		ps.next = kr.Offset + 1
		c.queued++
	}
}
