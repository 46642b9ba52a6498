package kafka

import (
	"context"
	"fmt"
	"slices"
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

// commit commits the offsets run asks it to, one request at a time, and
// reports each result. It runs apart from run because a commit waits while
// the group rebalances, and a rebalance may wait for run (onRevoked).
func (c *consumer) commit() {
	defer close(c.commitDone)
	for offs := range c.commitReq {
		ctx, cancel := context.WithTimeout(context.Background(), c.t.cfg.RequestTimeout)
		done := make(chan commitResult, 1)
		c.cl.CommitOffsets(ctx, map[string]map[int32]kgo.EpochOffset{c.kt: offs}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
			done <- commitResult{offs: offs, resp: resp, err: err}
		})
		res := <-done
		cancel()
		select {
		case c.committed <- res:
		case <-c.stopped:
		}
	}
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

// onRevoked runs on the client's goroutine when a rebalance takes
// partitions away: run stops handing them out, waits (up to RevokeTimeout)
// for their records in flight, and gives their commit points, which are
// committed here, before the rebalance goes on.
func (c *consumer) onRevoked(ctx context.Context, cl *kgo.Client, m map[string][]int32) {
	offs := c.askRevoke(m[c.kt], false)
	if len(offs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.t.cfg.RequestTimeout)
	defer cancel()
	cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.kt: offs}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			err = commitErr(resp)
		}
		if err != nil {
			c.log.Warn("commit at rebalance failed: the partitions' new owner may handle some events again", zap.Error(err))
		}
	})
}

// onLost runs when the member lost its partitions (its session expired):
// nothing can be committed; run forgets them.
func (c *consumer) onLost(_ context.Context, _ *kgo.Client, m map[string][]int32) {
	c.askRevoke(m[c.kt], true)
}

func (c *consumer) askRevoke(parts []int32, lost bool) map[int32]kgo.EpochOffset {
	if len(parts) == 0 {
		return nil
	}
	rq := &revokeReq{parts: parts, lost: lost, reply: make(chan map[int32]kgo.EpochOffset, 1)}
	select {
	case c.revokes <- rq:
	case <-c.done:
		return nil
	}
	select {
	case offs := <-rq.reply:
		return offs
	case <-c.done:
		return nil
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

// revoke stops handing out the partitions of rq, and answers it once their
// records in flight are settled (see checkRevokes); lost partitions are
// dropped at once.
func (c *consumer) revoke(rq *revokeReq) {
	for _, p := range rq.parts {
		ps := c.parts[p]
		if ps == nil {
			continue
		}
		ps.revoking = true
		c.queued -= len(ps.queue)
		ps.queue = nil // not handed out: the next owner reads them again
	}
	c.dropDelayed(rq.parts)
	if rq.lost {
		c.drop(rq.parts)
		rq.reply <- nil
		return
	}
	rq.deadline = time.Now().Add(c.t.cfg.RevokeTimeout)
	c.revoking = append(c.revoking, rq)
}

// checkRevokes answers the revocations whose partitions have nothing in
// flight, or whose RevokeTimeout passed, with their commit points.
func (c *consumer) checkRevokes(now time.Time, tick *time.Timer) {
	if len(c.revoking) == 0 {
		return
	}
	left := c.revoking[:0]
	for _, rq := range c.revoking {
		busy := false
		for _, p := range rq.parts {
			if ps := c.parts[p]; ps != nil {
				for _, r := range ps.pending {
					if r.state != queued {
						busy = true
						break
					}
				}
			}
		}
		if busy && now.Before(rq.deadline) {
			left = append(left, rq)
			tick.Reset(rq.deadline.Sub(now))
			continue
		}
		if busy {
			c.log.Warn("rebalance: events still in flight after RevokeTimeout; their partitions' new owner may handle them again",
				zap.Int32s("partitions", rq.parts))
		}
		rq.reply <- c.points(rq.parts, true)
		c.drop(rq.parts)
	}
	c.revoking = left
}

// points returns the commit points of parts that moved past their last
// commit (all with force, as long as a record was polled).
func (c *consumer) points(parts []int32, force bool) map[int32]kgo.EpochOffset {
	offs := map[int32]kgo.EpochOffset{}
	for _, p := range parts {
		ps := c.parts[p]
		if ps == nil || ps.next < 0 {
			continue
		}
		if pt := ps.point(); pt > ps.committed || force && pt >= 0 {
			offs[p] = kgo.EpochOffset{Epoch: -1, Offset: pt}
		}
	}
	return offs
}

// dropDelayed forgets the delayed records of parts: uncommitted, they go to
// the partitions' next owner.
func (c *consumer) dropDelayed(parts []int32) {
	left := c.delayed[:0]
	for _, r := range c.delayed {
		if slices.Contains(parts, r.r.Partition) {
			c.queued--
			continue
		}
		left = append(left, r)
	}
	clear(c.delayed[len(left):])
	c.delayed = left
}

// drop forgets parts.
func (c *consumer) drop(parts []int32) {
	c.dropDelayed(parts)
	for _, p := range parts {
		if ps := c.parts[p]; ps != nil {
			c.queued -= len(ps.queue)
			delete(c.parts, p)
			for i, q := range c.order {
				if q == p {
					c.order = append(c.order[:i], c.order[i+1:]...)
					break
				}
			}
		}
	}
}

// maybeCommit starts an asynchronous commit of the commit points that
// moved, at most one at a time and one per CommitInterval.
func (c *consumer) maybeCommit(now time.Time, tick *time.Timer) {
	if !c.dirty || c.committing || c.stopping {
		return
	}
	if wait := c.t.cfg.CommitInterval - now.Sub(c.lastCommit); wait > 0 {
		tick.Reset(wait)
		return
	}
	c.dirty = false
	offs := c.points(c.order, false)
	for p := range offs {
		if c.parts[p].revoking {
			delete(offs, p) // committed by the revocation
		}
	}
	if len(offs) == 0 {
		return
	}
	c.committing, c.lastCommit = true, now
	c.commitReq <- offs // never blocks: the last commit is done
}

func (c *consumer) commitResult(res commitResult) {
	c.committing = false
	err := res.err
	if err == nil {
		err = commitErr(res.resp)
	}
	if err != nil {
		c.log.Debug("offset commit failed; retrying", zap.Error(err))
		c.dirty = true
		return
	}
	for p, o := range res.offs {
		if ps := c.parts[p]; ps != nil && o.Offset > ps.committed {
			ps.committed = o.Offset
		}
	}
}

// commitErr returns the first partition error of a commit response.
func commitErr(resp *kmsg.OffsetCommitResponse) error {
	if resp == nil {
		return nil
	}
	for _, t := range resp.Topics {
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 {
				return fmt.Errorf("partition %d: error code %d", p.Partition, p.ErrorCode)
			}
		}
	}
	return nil
}

// shutdown stops the consumer: no more attaches; the poller and the
// committer end; what was settled is committed, synchronously; every
// goroutine is told to end; the client leaves the group. It keeps answering
// revocations meanwhile: a rebalance may be waiting for them.
func (c *consumer) shutdown() {
	c.stopping = true
	close(c.stopped)
	c.pollCancel()
	close(c.commitReq)
	polling, committing := true, true
	pollDone, commitDone := c.pollDone, c.commitDone
	var final chan struct{}
	for {
		if !polling && !committing && final == nil {
			c.ackedMeanwhile()
			final = make(chan struct{})
			go c.finalCommit(c.points(c.order, false), final)
		}
		select {
		case <-c.polled:
		case st := <-c.settled:
			c.settle(st)
		case rq := <-c.revokes:
			if rq.lost {
				rq.reply <- nil
			} else {
				rq.reply <- c.points(rq.parts, true)
			}
			c.drop(rq.parts)
		case <-c.copySignal:
			c.copied()
		case res := <-c.committed:
			c.commitResult(res)
		case <-pollDone:
			polling, pollDone = false, nil
			for _, rq := range c.revoking {
				rq.reply <- c.points(rq.parts, true)
				c.drop(rq.parts)
			}
			c.revoking = nil
		case <-commitDone:
			committing, commitDone = false, nil
		case <-final:
			close(c.done)
			// Leave within RequestTimeout: Close alone retries the leave
			// for as long as the cluster does not answer.
			ctx, cancel := context.WithTimeout(context.Background(), c.t.cfg.RequestTimeout)
			_ = c.cl.LeaveGroupContext(ctx)
			cancel()
			c.cl.Close()
			return
		}
	}
}

// ackedMeanwhile settles the records handed out whose message was acked and
// whose watcher has not reported it yet: an Ack that happened before Close
// is committed.
func (c *consumer) ackedMeanwhile() {
	for _, ps := range c.parts {
		for _, r := range ps.pending {
			if r.state != out {
				continue
			}
			select {
			case <-r.msg.Acked():
				c.finish(r)
			default:
			}
		}
	}
}

// finalCommit commits offs synchronously and closes done.
func (c *consumer) finalCommit(offs map[int32]kgo.EpochOffset, done chan struct{}) {
	defer close(done)
	if len(offs) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.t.cfg.RequestTimeout)
	defer cancel()
	c.cl.CommitOffsetsSync(ctx, map[string]map[int32]kgo.EpochOffset{c.kt: offs}, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		if err == nil {
			err = commitErr(resp)
		}
		if err != nil {
			c.log.Warn("final commit failed: some settled events will be delivered again", zap.Error(err))
		}
	})
}
