package nats_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
)

// A publish whose PubAck never comes fails after PubAckTimeout and frees its
// publish slot; one that waits for a slot honours its ctx.
func TestPubAckTimeout(t *testing.T) {
	srv := natstest.New(t)
	// No stream captures "mute.>"; a core subscriber takes the messages and
	// never answers.
	nc := connect(t, srv.URL())
	sub, err := nc.SubscribeSync("mute.>")
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = sub.Unsubscribe() }()
	tr := broker{url: srv.URL(), stream: "MUTE", prefix: "mute"}.transport(t, func(c *nats.Config) {
		c.PubAckTimeout = 300 * time.Millisecond
		c.MaxPendingPublishes = 1
	})
	// Its streams, then no events stream: only the mute subscriber gets
	// the publish.
	if err := tr.Start(testCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := tr.JetStream().DeleteStream(testCtx(t), "MUTE"); err != nil {
		t.Fatal(err)
	}

	// Two publishes at once with one slot: the first waits for its PubAck,
	// the second for the slot, with a ctx shorter than PubAckTimeout.
	first := make(chan error, 1)
	go func() { first <- tr.Publisher().Publish("x", message.NewMessage("m1", []byte("{}"))) }()
	if _, err := sub.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("the first publish was not sent: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	m2 := message.NewMessage("m2", []byte("{}"))
	m2.SetContext(ctx)
	if err := tr.Publisher().Publish("x", m2); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "publish slot") {
		t.Errorf("publish waiting for the only slot: %v", err)
	}
	begin := time.Now()
	err = <-first
	if err == nil || !strings.Contains(err.Error(), "PubAck") {
		t.Errorf("publish without a PubAck: %v", err)
	}
	t.Logf("publish without a PubAck failed after %v: %v", time.Since(begin), err)
	// Its slot is free again.
	ctx3, cancel3 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel3()
	m3 := message.NewMessage("m3", []byte("{}"))
	m3.SetContext(ctx3)
	if err := tr.Publisher().Publish("x", m3); err == nil || strings.Contains(err.Error(), "publish slot") {
		t.Errorf("publish after the timeout: %v, want a PubAck timeout", err)
	}
}
