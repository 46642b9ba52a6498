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

// Backlog returns how many events of topic the durable consumers of handler
// have not had acknowledged: their pending messages (in the stream, not yet
// delivered) plus their ack-pending ones (delivered to a process, prefetched
// or in flight, or waiting for a redelivery after a nack), summed over the
// consumers of topic and of its keyed partitions (see Config.Partitions).
// Those of every process of the handler count. A handler without a consumer
// on topic has a backlog of 0. It makes a request to the server per consumer
// the handler may have (a consumer info: 1 for a replay topic, Partitions+2
// for an event topic), bounded by ctx
// or, when ctx has no deadline, by RequestTimeout.
func (t *Transport) Backlog(ctx context.Context, handler, topic string) (int64, error) {
	if err := t.prepare(ctx); err != nil {
		return 0, err
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	var n int64
	for _, ct := range t.consumerTopics(topic) {
		var cons jetstream.Consumer
		err := t.withStreams(ctx, func() error {
			var err error
			cons, err = t.eventsStream().Consumer(ctx, consumerName(handler, ct))
			return err
		})
		if errors.Is(err, jetstream.ErrConsumerNotFound) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("herald/nats: backlog of handler %q on %q: %w", handler, t.Subject(ct), err)
		}
		info := cons.CachedInfo()
		n += int64(info.NumPending) + int64(info.NumAckPending)
	}
	return n, nil
}

// System returns "nats", the transport's name in telemetry (the
// messaging.system attribute).
func (t *Transport) System() string { return "nats" }
