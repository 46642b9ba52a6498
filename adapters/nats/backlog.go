package nats

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/transport"
)

var (
	_ transport.BacklogReporter = (*Transport)(nil)
	_ transport.SystemNamer     = (*Transport)(nil)
)

// Backlog returns how many events of topic the durable consumer of handler
// has not had acknowledged: its pending messages (in the stream, not yet
// delivered) plus its ack-pending ones (delivered to a process, prefetched or
// in flight, or waiting for a redelivery after a nack). Those of every process
// of the handler count. A handler without a consumer on topic has a backlog of
// 0. It makes one request to the server (a consumer info), bounded by ctx or,
// when ctx has no deadline, by RequestTimeout.
func (t *Transport) Backlog(ctx context.Context, handler, topic string) (int64, error) {
	if err := t.prepare(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	var cons jetstream.Consumer
	err := t.withStreams(ctx, func() error {
		var err error
		cons, err = t.eventsStream().Consumer(ctx, consumerName(handler, topic))
		return err
	})
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("herald/nats: backlog of handler %q on %q: %w", handler, topic, err)
	}
	info := cons.CachedInfo()
	return int64(info.NumPending) + int64(info.NumAckPending), nil
}

// System returns "nats", the transport's name in telemetry (the
// messaging.system attribute).
func (t *Transport) System() string { return "nats" }
