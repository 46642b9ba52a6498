// Package faults is Herald's fault and bad-input suite: tests only, no API.
//
// Each test injects one fault into a running bus and proves, by counting
// events by ID, that nothing is lost: a nats-server restart mid-stream, a
// lost PubAck, a consumer that dies with events unacknowledged, transient and
// permanent handler failures, bad input on the wire, handler panics, a
// handler slower than AckWait, Close with events in flight or with NATS down,
// a blocked handler among others, the loss of the stream leader in a
// three-node JetStream cluster, a handler's consumer or the events stream
// deleted mid-stream, a restart of a server with memory storage, two
// processes of one handler with different AckWaits, Close with 10k events
// queued in memory, a restart while events wait for a delayed retry, and
// retries at scale. Faults that apply to both transports run on memory and
// on NATS. NATS tests use embedded servers they start, restart
// and stop themselves (never NATS_URL).
//
// Every test logs one or more lines starting with "FIGURES" (key=value
// pairs: events sent, delivered, duplicates, poisoned, time to recover);
// RELIABILITY.md at the repository root tabulates them and says how to
// reproduce them:
//
//	go test -race -count=1 -v ./faults/ | grep FIGURES
//
// Set FAULTS_LOG=1 to see the bus's and the transport's warnings in the
// test log.
package faults
