// Package transport is the contract between Herald's bus and the transports
// that move its events (package adapters/memory, adapters/nats, and any you
// write). It is a leaf: it imports nothing else from Herald, so a transport
// depends on this package and on watermill's message package only.
//
// A transport is a [Transport]: a watermill [message.Publisher] and one
// [message.Subscriber] per handler name. What the bus asks of it is stated on
// each method; docs/contract.md says what users are promised on top of it, and
// package adapters/adaptertest checks both against a real transport.
//
// Capabilities beyond the three methods are optional interfaces, each small:
// [Starter] (prepare at bus start), [BatchPublisher] (pipelined batches),
// [WindowSubscriber] (more than one message in flight per subscription),
// [KeyedSubscriber] (one key's events in order across processes),
// [PoisonStore] (keep poison records), [BacklogReporter] (how many events wait
// for a handler), [SystemNamer] (the name telemetry gives the transport),
// [AsyncPublisher] (publish without waiting), [History] (a new handler starts
// from a point in the past), [Handlers] (list and delete what is kept for
// handler names), [Tracker] (keep delivery tracking records) and [Requester]
// (request/reply). The bus discovers them with a type
// assertion; a transport without one still works, with the behaviour each
// interface's doc gives for its absence.
//
// Events travel as messages whose metadata carries the keys below ([KeyID],
// [KeyEvent], ...). On NATS they are header names, so a service in another
// language publishes Herald events by setting them. One key travels the other
// way, from the bus to the transport on a message it nacks:
// [KeyRedeliveryDelay], the delay the bus asks for before the redelivery.
//
// Errors a transport returns are tested with errors.Is against the sentinels
// here ([ErrClosed], [ErrTooLarge], ...); the bus returns them unchanged, and
// package bus re-exports them under the names users test.
package transport
