package faults_test

import (
	"fmt"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bustest"
	"github.com/heraldbus/herald/transport"
)

// Fault 2: a PubAck is lost, so the publisher publishes the same event again
// with the same message ID inside the stream's duplicate window. The stream
// stores nothing new, Publish returns nil (a duplicate counts as published),
// and the handler gets each event once.
//
// Two ways: (a) 1k events published with bus.Publish, then all 1k again;
// (b) 1k events sent by a raw publish that asks for no PubAck at all (so it
// is lost by construction), then published with bus.Publish.
func TestLostPubAck(t *testing.T) {
	be := natsBackend(t, func(c *hnats.Config) { c.Retention = hnats.RetentionLimits })
	b := be.bus(t)
	c := subscribeTally(t, b, "puback.h", nil)
	const n = 1000
	withID := withMessageIDs("pub")

	// (a) The same 1k message IDs, twice.
	publishRange(t, b, 0, n, withID)
	if got := be.streamMsgs(t); got != n {
		t.Fatalf("after the first 1k publishes the stream holds %d messages", got)
	}
	begin := time.Now()
	publishRange(t, b, 0, n, withID) // every Publish must return nil
	again := time.Since(begin)
	if got := be.streamMsgs(t); got != n {
		t.Errorf("(a) publishing the same 1k message IDs again: the stream holds %d messages, want %d", got, n)
	}

	// (b) 1k events whose PubAck nobody waits for: a core NATS publish with
	// no reply subject, carrying Herald's headers and the message ID.
	nc := be.conn(t)
	for seq := n; seq < 2*n; seq++ {
		id := fmt.Sprintf("pub-%05d", seq)
		m := &natsgo.Msg{Subject: be.subject(eventName), Data: fmt.Appendf(nil, `{"seq":%d}`, seq), Header: natsgo.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Header.Set(transport.KeyID, id)
		m.Header.Set(transport.KeyEvent, eventName)
		m.Header.Set(transport.KeyContentType, "application/json")
		if err := nc.PublishMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, wait, func() bool { return be.streamMsgs(t) == 2*n }, "the stream stored the 1k unacknowledged publishes")
	publishRange(t, b, n, n, withID) // the publisher's retry after its lost PubAck
	if got := be.streamMsgs(t); got != 2*n {
		t.Errorf("(b) publishing again after a lost PubAck: the stream holds %d messages, want %d", got, 2*n)
	}

	// A marker last: at concurrency 1 the handler sees it after every event
	// stored before it, duplicates included.
	publishRange(t, b, 2*n, 1)
	c.waitFor(t, wait, func() bool { return c.ok[2*n] > 0 }, "the marker is handled")
	c.check(t, 2*n+1, "puback.h")
	f := figures{fault: "2-lost-puback", transport: "nats", handlers: 1, sent: 2 * n,
		delivered: c.distinct() - 1, dups: c.duplicates(), poisoned: len(poisonList(t, b, ""))}
	f.add("republished", 2*n)
	f.add("stream_msgs", be.streamMsgs(t)-1)
	f.add("republish_1k_took", again)
	f.log(t)
	if f.delivered != 2*n || f.dups != 0 {
		t.Errorf("handler got %d distinct events and %d duplicates; want %d and 0", f.delivered, f.dups, 2*n)
	}
}

// Fault 2, across a server restart: 1k events are published with message
// IDs, handled and acknowledged, the server restarts, and the publisher,
// which never saw its PubAcks, publishes the same 1k IDs again, well inside
// the 2-minute duplicate window.
//
//   - limits retention: the stream still holds the events, so it still
//     knows their IDs: nothing is stored or delivered again.
//   - interest retention (the default): acknowledged events are deleted, and
//     a restarted server rebuilds its duplicate window from the events it
//     holds, so it forgets their IDs and the republish is delivered again.
//     This is the documented caveat of nats.RetentionInterest (found by this
//     test, documented in 43bfe66); delivery stays at least once, and the
//     test checks that nothing is lost and reports the duplicates.
func TestLostPubAckAcrossRestart(t *testing.T) {
	eachRetention(t, lostPubAckAcrossRestart)
}

func lostPubAckAcrossRestart(t *testing.T, retention hnats.Retention) {
	be := natsBackend(t, func(c *hnats.Config) { c.Retention = retention })
	b := be.bus(t)
	c := subscribeTally(t, b, "puback.restart", nil)
	const n = 1000
	withID := withMessageIDs("pubr")
	publishRange(t, b, 0, n, withID)
	c.waitDistinct(t, n, wait, "the first 1k handled")
	be.settled(t, "puback.restart")
	publishRange(t, b, 0, n, withID) // before the restart: dropped, in both retentions
	if err := be.srv.Restart(); err != nil {
		t.Fatal(err)
	}
	pub := newPublisher(b, "pubr")
	if failed := pub.run(0, n, time.Now().Add(wait)); len(failed) > 0 {
		t.Fatalf("gave up republishing %d events", len(failed))
	}
	publishRange(t, b, n, 1) // the marker: at concurrency 1, after any duplicate
	c.waitFor(t, wait, func() bool { return c.ok[n] > 0 }, "the marker is handled")
	c.check(t, n+1, "puback.restart")
	f := figures{fault: "2-lost-puback-across-restart", transport: "nats-limits", handlers: 1, sent: n,
		delivered: c.distinct() - 1, dups: c.duplicates(), poisoned: len(poisonList(t, b, ""))}
	if retention == hnats.RetentionInterest {
		f.transport = "nats-interest"
	}
	f.add("republished_before_restart", n)
	f.add("republished_after_restart", n)
	f.log(t)
	if f.delivered != n {
		t.Errorf("%d of %d events delivered", f.delivered, n)
	}
	if retention == hnats.RetentionLimits && f.dups != 0 {
		t.Errorf("%d of %d events republished with the same message ID after a server restart were delivered again", f.dups, n)
	}
}
