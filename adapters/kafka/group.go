package kafka

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
	"go.uber.org/zap"
)

// Rebalances, commits and shutdown of a consumer: see consumer.

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
