// Package nats is a Herald transport over NATS JetStream.
//
//	t, err := nats.New(nats.Config{URL: "nats://127.0.0.1:4222"})
//	if err != nil { ... }                     // the server is unreachable, or a bad Config
//	b, err := bus.New(bus.WithTransport(t))   // the bus owns t: b.Close closes it
//
// Handlers, events and middleware are the same as on the memory transport; only
// the transport constructor changes. What NATS adds:
//
//   - Durability: each handler name has a durable consumer per event type, so
//     events published while its service is down are delivered when it comes
//     back, and several processes with one handler name share its events.
//   - Publish returns once the stream has stored the event (its PubAck);
//     concurrent publishes are pipelined on one connection.
//   - Poison records are kept in a stream of their own and survive restarts.
//   - A slow handler or a long retry never causes a concurrent redelivery:
//     the transport sends progress acks while it holds an event.
//
// It needs nats-server 2.9 or newer with JetStream enabled (-js). Streams and
// consumers are created on first use with the settings of [Config]; an
// existing stream is used as it is. Package natstest starts an embedded server
// for tests.
package nats
