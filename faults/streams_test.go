package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// Faults 14 to 16 take a stream's or a consumer's state away while events
// flow: a publisher publishes one event every 10 ms (retrying a failed
// Publish with the same message ID), handlers record every event, and the
// fault strikes once a third of the events are out. Then a marker event is
// published last; once every handler has it and its consumer has nothing
// pending, the counts are final: an event whose Publish returned nil and
// that a handler never got is lost.

// pacedRun is one such run.
type pacedRun struct {
	n     int           // events published (seqs 0 to n-1), then the marker (seq n)
	at    int           // the fault strikes once this many are published
	every time.Duration // publish pace
	work  time.Duration // each handling takes this long
	names []string      // handlers that must each get every event
	// poison, if set, names a handler that fails permanently on every 10th
	// event (its records are counted).
	poison string
}

// pacedResult is what a run measured.
type pacedResult struct {
	sent        int // events whose Publish returned nil (the marker excluded)
	tallies     []*tally
	firstAfter  int           // the first seq published after the fault ended
	recover     time.Duration // from the fault's end until handler 0 had an event published after it
	faultTook   time.Duration
	publishErrs int64
	errSummary  string
	poisoned    map[int]bool // seqs with a record of the poison handler
	b           *bus.Bus
}

// lost is how many (sent event, handler) pairs were never handled.
func (r *pacedResult) lost(i int) int { return len(r.tallies[i].notHandled(0, r.sent)) }

// checkAfterFault fails t for every handler that lost events published
// after the fault (after what) ended.
func (r *pacedResult) checkAfterFault(t testing.TB, after string) {
	t.Helper()
	for i, c := range r.tallies {
		if late := c.notHandled(r.firstAfter, r.sent); len(late) > 0 {
			t.Errorf("handler %d lost %d events published after %s: %v", i, len(late), after, late[:min(10, len(late))])
		}
	}
}

// missingOf describes the seqs (of the sent ones) handler i never got.
func (r *pacedResult) missingOf(i int) string {
	c := r.tallies[i]
	c.mu.Lock()
	defer c.mu.Unlock()
	return missing(c.ok, r.sent)
}

// figures returns the run's figures line.
func (r *pacedResult) figures(fault, transport string) figures {
	f := figures{fault: fault, transport: transport, handlers: len(r.tallies), sent: r.sent, recover: r.recover}
	lost := 0
	for i, c := range r.tallies {
		c.mu.Lock()
		for seq := range r.sent {
			if c.ok[seq] > 0 {
				f.delivered++
				f.dups += c.ok[seq] - 1
			}
		}
		c.mu.Unlock()
		lost += r.lost(i)
	}
	f.poisoned = len(r.poisoned)
	f.add("lost", lost)
	for i := range r.tallies {
		f.add(fmt.Sprintf("lost_h%d", i), r.lost(i))
	}
	f.add("fault_at_seq", r.firstAfter)
	f.add("fault_took", r.faultTook)
	f.add("publish_errors", r.publishErrs)
	return f
}

func (pr pacedRun) run(t *testing.T, be *backend, fault func()) *pacedResult {
	t.Helper()
	b := be.bus(t)
	res := &pacedResult{b: b, poisoned: map[int]bool{}}
	// faultAt["seq"]: the first seq published after the fault struck;
	// recovered["t"]: when handler 0 first handled one of those.
	var faultAt, recovered sync.Map
	for i, name := range pr.names {
		c := newTally()
		res.tallies = append(res.tallies, c)
		if _, err := bus.Subscribe(b, name, c.handler(func(ctx context.Context, e Event, _ int) error {
			if pr.work > 0 {
				if err := work(ctx, pr.work); err != nil {
					return err
				}
			}
			if i == 0 {
				if v, ok := faultAt.Load("seq"); ok && e.Seq >= v.(int) && e.Seq < pr.n {
					recovered.LoadOrStore("t", time.Now())
				}
			}
			return nil
		})); err != nil {
			t.Fatal(err)
		}
	}
	if pr.poison != "" {
		if _, err := bus.Subscribe(b, pr.poison, func(ctx context.Context, e Event) error {
			if e.Seq%10 == 0 && e.Seq < pr.n {
				return bus.Permanent(fmt.Errorf("event %d always fails", e.Seq))
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}

	pub := newPublisher(b, fmt.Sprintf("paced-%d", time.Now().UnixNano()))
	until := time.Now().Add(2 * time.Minute)
	reached := make(chan struct{})
	published := make(chan []int, 1)
	go func() {
		var failed []int
		tick := time.NewTicker(pr.every) // the publisher's pace, not synchronisation
		defer tick.Stop()
		for seq := range pr.n {
			<-tick.C
			if !pub.publish(seq, until) {
				failed = append(failed, seq)
			}
			if seq+1 == pr.at {
				close(reached)
			}
		}
		published <- failed
	}()
	<-reached
	begin := time.Now()
	fault()
	res.faultTook = time.Since(begin)
	// The events published from now on came after the fault (the publisher
	// publishes in order, one at a time).
	end := time.Now()
	pub.mu.Lock()
	res.firstAfter = len(pub.ok)
	pub.mu.Unlock()
	faultAt.Store("seq", res.firstAfter)
	if failed := <-published; len(failed) > 0 {
		t.Fatalf("gave up publishing %d events: %v (errors: %s)", len(failed), failed[:min(10, len(failed))], pub.errorSummary())
	}
	if !pub.publish(pr.n, until) {
		t.Fatalf("gave up publishing the marker (errors: %s)", pub.errorSummary())
	}
	for i, c := range res.tallies {
		c.waitFor(t, wait, func() bool { return c.ok[pr.n] > 0 }, fmt.Sprintf("handler %d has the marker", i))
	}
	for _, name := range pr.names {
		be.settled(t, name)
	}
	res.sent = len(pub.published()) - 1
	res.publishErrs = pub.errs.Load()
	res.errSummary = pub.errorSummary()
	if v, ok := recovered.Load("t"); ok {
		res.recover = v.(time.Time).Sub(end)
	} else {
		res.recover = -1
	}
	if pr.poison != "" {
		// Every 10th event published after the fault must be poisoned.
		var want []int
		for seq := res.firstAfter; seq < pr.n; seq++ {
			if seq%10 == 0 {
				want = append(want, seq)
			}
		}
		bustest.Eventually(t, wait, func() bool {
			clear(res.poisoned)
			for _, rec := range poisonList(t, b, pr.poison) {
				var e Event
				if err := json.Unmarshal(rec.Payload, &e); err == nil {
					res.poisoned[e.Seq] = true
				}
			}
			for _, seq := range want {
				if !res.poisoned[seq] {
					return false
				}
			}
			return true
		}, "a poison record for every 10th event published after the fault (%d)", len(want))
	}
	for i, c := range res.tallies {
		c.check(t, pr.n+1, pr.names[i])
	}
	return res
}

// Fault 14: a handler's durable consumer is deleted (by an operator or a
// tool) while events flow, one every 10 ms, to 2 handlers; the other
// handler's consumer is left alone. The transport notices (a pull answered
// "consumer deleted", or no answer and a missed heartbeat) and creates the
// consumer again from where the handler was, not from the events published
// after: with limits retention nothing is lost, whether the handler was
// idle or busy (each event taking 20 ms, a backlog prefetched). With
// interest retention the stream keeps an event only while a consumer that
// wants it exists: the events the other handler acknowledged while the
// consumer was missing are gone by the time it is back (a documented limit
// of interest retention, not a transport fault).
func TestConsumerDeletedMidStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		retention hnats.Retention
		work      time.Duration
	}{
		{"limits/idle", hnats.RetentionLimits, 0},
		{"limits/busy", hnats.RetentionLimits, 20 * time.Millisecond},
		{"interest/idle", hnats.RetentionInterest, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := natsBackend(t, func(c *hnats.Config) { c.Retention = tc.retention })
			pr := pacedRun{n: 300, at: 100, every: 10 * time.Millisecond, work: tc.work,
				names: []string{"deleted.h0", "deleted.h1"}}
			res := pr.run(t, be, func() {
				ci := be.consumer(t, pr.names[0], eventName)
				if err := be.js(t).DeleteConsumer(ctxFor(t, 10*time.Second), be.streamName(), ci.Name); err != nil {
					t.Fatal(err)
				}
			})
			after := be.consumer(t, pr.names[0], eventName)
			f := res.figures("14-consumer-deleted", "nats-"+tc.name)
			f.add("handler_work", tc.work)
			f.add("recreated_deliver_policy", after.Config.DeliverPolicy)
			f.add("recreated_start_seq", after.Config.OptStartSeq)
			f.log(t)
			if res.lost(1) != 0 {
				t.Errorf("the handler whose consumer was left alone lost %d events: %s", res.lost(1), res.missingOf(1))
			}
			if tc.retention == hnats.RetentionLimits && res.lost(0) != 0 {
				t.Errorf("the handler whose consumer was deleted lost %d events: %s", res.lost(0), res.missingOf(0))
			}
			if res.recover < 0 {
				t.Error("no event published after the fault reached the handler")
			}
		})
	}
}

// Fault 15: the events stream is deleted while events flow, one every
// 10 ms, to 2 handlers, and created again: by the transport itself (a
// publish finds no stream; it prepares the streams again, with its
// handlers' consumers) or by another process (at once, with the same
// configuration; the handlers' consumers are then created again with
// every event the new stream holds). The events stored in the deleted
// stream and not yet handled went with it (counted as lost: the operator
// deleted them); every event published after reaches both handlers, except
// with interest retention when another process creates the stream: events
// published before the consumers exist again are not kept (interest
// retention keeps an event only for the consumers that exist).
func TestStreamDeletedMidStream(t *testing.T) {
	for _, tc := range []struct {
		name      string
		retention hnats.Retention
		byOther   bool
	}{
		{"limits/by-transport", hnats.RetentionLimits, false},
		{"interest/by-transport", hnats.RetentionInterest, false},
		{"limits/by-other-process", hnats.RetentionLimits, true},
		{"interest/by-other-process", hnats.RetentionInterest, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			be := natsBackend(t, func(c *hnats.Config) { c.Retention = tc.retention })
			pr := pacedRun{n: 300, at: 100, every: 10 * time.Millisecond, names: []string{"stream.h0", "stream.h1"}}
			var unhandled int
			res := pr.run(t, be, func() {
				ctx := ctxFor(t, 10*time.Second)
				js := be.js(t)
				ci := be.consumer(t, pr.names[0], eventName)
				s, err := js.Stream(ctx, be.streamName())
				if err != nil {
					t.Fatal(err)
				}
				info, err := s.Info(ctx)
				if err != nil {
					t.Fatal(err)
				}
				// Roughly what the deletion takes away unhandled: interest
				// retention holds only those; limits holds them after the
				// handler's ack floor.
				unhandled = int(info.State.Msgs)
				if tc.retention == hnats.RetentionLimits {
					unhandled = int(info.State.LastSeq) - int(ci.AckFloor.Stream)
				}
				if err := js.DeleteStream(ctx, be.streamName()); err != nil {
					t.Fatal(err)
				}
				if tc.byOther {
					if _, err := js.CreateStream(ctx, info.Config); err != nil {
						t.Fatal(err)
					}
				}
			})
			f := res.figures("15-stream-deleted", "nats-"+tc.name)
			f.add("unhandled_in_deleted_stream", unhandled)
			f.add("publish_error_kinds", fmt.Sprintf("%q", res.errSummary))
			f.log(t)
			// Events published after the fault struck must all arrive, except
			// in the documented interest-retention window.
			if !(tc.byOther && tc.retention == hnats.RetentionInterest) {
				res.checkAfterFault(t, "the stream was deleted")
			}
		})
	}
}

// Fault 16: the nats-server restarts with memory storage while events flow,
// one every 10 ms, to 2 handlers and a third that fails on every 10th event
// (poisoned): the streams, consumers, stored events and poison records are
// gone. The transport prepares the streams again when it finds them missing
// (publishes answered by no stream, consumers and poison records told the
// stream does not exist), with its handlers' consumers: publishing resumes,
// every event published after the restart reaches both handlers, and the
// failing events are poisoned again. The events the server held and had not
// delivered are lost with its memory (counted as lost: memory storage).
func TestMemoryStorageRestartMidStream(t *testing.T) {
	for _, retention := range []hnats.Retention{hnats.RetentionInterest, hnats.RetentionLimits} {
		name := map[hnats.Retention]string{hnats.RetentionInterest: "interest", hnats.RetentionLimits: "limits"}[retention]
		t.Run(name, func(t *testing.T) {
			be := natsBackend(t, func(c *hnats.Config) { c.Storage = jetstream.MemoryStorage; c.Retention = retention })
			pr := pacedRun{n: 300, at: 100, every: 10 * time.Millisecond, names: []string{"memory.h0", "memory.h1"}, poison: "memory.poison"}
			res := pr.run(t, be, func() {
				if err := be.srv.Restart(); err != nil {
					t.Fatalf("restart: %v", err)
				}
			})
			f := res.figures("16-memory-restart", "nats-memory-"+name)
			f.add("publish_error_kinds", fmt.Sprintf("%q", res.errSummary))
			f.log(t)
			res.checkAfterFault(t, "the restart")
		})
	}
}

// Fault 17: a rolling config change: two processes of one handler, the
// first with AckWait 30s, the second with 1s, share its consumer; each
// event takes 1.5s to handle (longer than the shorter AckWait). The second
// process does not lower the consumer's AckWait (the first paces its
// progress acks by it) and paces its own by the consumer's, so no event is
// redelivered while it is handled: every event once, never concurrently,
// and the server delivered each once.
func TestMixedAckWait(t *testing.T) {
	be := natsBackend(t)
	const name, n = "mixed.h", 6
	const handling = 1500 * time.Millisecond
	var mu sync.Mutex
	running := map[int]bool{}
	overlaps := 0
	c := newTally()
	fn := c.handler(func(ctx context.Context, e Event, _ int) error {
		mu.Lock()
		if running[e.Seq] {
			overlaps++
		}
		running[e.Seq] = true
		mu.Unlock()
		defer func() {
			mu.Lock()
			running[e.Seq] = false
			mu.Unlock()
		}()
		return work(ctx, handling)
	})
	var pubBus *bus.Bus
	for _, ackWait := range []time.Duration{30 * time.Second, time.Second} {
		cfg := be.cfg
		cfg.AckWait = ackWait
		cfg.Logger = logger(t)
		tr, err := hnats.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = tr.Close() })
		b := bustest.New(t, be.busOpts(t, tr)...)
		if _, err := bus.Subscribe(b, name, fn); err != nil {
			t.Fatal(err)
		}
		pubBus = b
	}
	took, ci := be.handleAll(t, pubBus, c, name, n, "every event handled")
	f := oneHandler(t, "17-mixed-ack-wait", "nats", c, n, pubBus)
	f.add("ack_waits", "30s,1s")
	f.add("consumer_ack_wait", ci.Config.AckWait)
	f.add("handler_time", handling)
	f.add("calls", c.totalCalls())
	f.add("concurrent", overlaps)
	f.add("server_deliveries", ci.Delivered.Consumer)
	f.add("took", took)
	f.log(t)
	if f.dups != 0 || overlaps != 0 || c.totalCalls() != n || ci.Delivered.Consumer != n {
		t.Errorf("%d calls for %d events, %d concurrent, %d duplicates; the server delivered %d times",
			c.totalCalls(), n, overlaps, f.dups, ci.Delivered.Consumer)
	}
}
