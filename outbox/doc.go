// Package outbox is a transactional outbox on Postgres: a service stores an
// event in the same database transaction as the change it reports, and a
// forwarder publishes it on the bus's transport once that transaction has
// committed. A crash between saving and publishing no longer loses the event,
// and a rolled-back transaction publishes nothing.
//
//	ob, err := outbox.New(db, b, outbox.WithTable("shop.outbox")) // db: sql.Open("pgx", url)
//	err = ob.Migrate(ctx)                                         // on request only
//	go ob.Forward(ctx)                                            // after b.Start
//
//	tx, err := db.BeginTx(ctx, nil)
//	_, err = tx.ExecContext(ctx, "INSERT INTO orders ...")
//	err = outbox.Store(ctx, ob, tx, OrderPlaced{ID: "o-1"})
//	err = tx.Commit()
//
// It works with any transport: on the memory transport the forwarder
// publishes into the in-process bus, so a monolith can adopt the outbox
// before it splits.
//
// # Encoding and IDs
//
// [Store] encodes the event as [bus.Publish] would ([bus.Encode]): the bus's
// codec, the same metadata, a new event ID (or [bus.WithMessageID]), the
// correlation and causation IDs of the handler's event when ctx is a
// handler's context. The forwarder publishes the stored message unchanged,
// with the event ID as the message ID: on NATS that is the Nats-Msg-Id, so a
// forwarder that published and then failed to delete (a crash, a lost
// connection) publishes again an event the stream drops as a duplicate,
// within the stream's duplicate window. The memory transport does not
// deduplicate: there, such a failure delivers the event twice (at least once).
//
// # Order
//
// Events are forwarded ordered by their storing transaction's ID (xid8, the
// xid column), then by their order within it. The forwarder only takes rows of
// transactions older than every transaction still in progress (xid below
// pg_snapshot_xmin of its snapshot), so no row can later appear before one
// already forwarded: the order is never broken by a transaction that commits
// late. The guarantees: the events of one transaction are forwarded together,
// in the order they were stored; and if a transaction storing B began writing
// after the transaction storing A committed, A is forwarded before B (causal
// order). Two concurrent transactions are forwarded in the order they began
// to write, which may differ from the order they committed. A sequence
// (bigserial) alone would not do: its values are taken at insert time, and a
// lower value can commit after a higher one has been forwarded.
//
// The price: any long transaction on the database, even one that stores no
// event, holds back the events of transactions that began after it, until it
// ends. Keep transactions short. While events are held back, the forwarder
// looks again on its own (after the minimum backoff, doubling up to the poll
// interval), since such a transaction may end without a notification.
//
// # Several forwarders
//
// Every batch runs in one transaction that first takes a transaction-level
// advisory lock keyed by the table (pg_try_advisory_xact_lock). One forwarder
// forwards at a time; the others find the lock taken and wait for the next
// notification or poll. The lock, not SELECT ... FOR UPDATE SKIP LOCKED, is
// the choice because SKIP LOCKED lets a second forwarder publish the next
// batch while the first is still publishing its own, which breaks the order
// above; the outbox is one ordered stream, and forwarding is rarely the
// bottleneck (a batch is published with one pipelined call). The lock is
// released when the transaction ends, however it ends: a forwarder that dies
// or loses its connection leaves no lock behind, and its batch is not deleted.
//
// # Wake-up
//
// A committed Store notifies the table's channel (pg_notify, sent at commit,
// nothing on rollback). The forwarder listens on a connection of its own,
// taken from db's pool for as long as it runs (count it in SetMaxOpenConns),
// which needs the pgx driver (github.com/jackc/pgx/v5/stdlib); it polls every
// [WithPollInterval] as well, and reconnects the listener with backoff when
// its connection drops.
//
// # Schema
//
// The table is created by [Outbox.Migrate], or by the SQL of [MigrationSQL]
// in the service's own migrations; never implicitly. Forwarded rows are
// deleted, so the table only holds events waiting to be forwarded.
//
// # Why not watermill's forwarder and watermill-sql
//
// Herald's transports are watermill publishers, so watermill's forwarder
// (components/forwarder) with watermill-sql/v4 as the outbox store was
// evaluated first. It does not meet the outbox's needs: the forwarder wraps
// every message in a JSON envelope under a new UUID inside the SQL table and
// forwards one message at a time through a router, with no batching of
// publishes; watermill-sql's Postgres subscriber polls (no LISTEN/NOTIFY
// wake-up), keeps consumed rows and tracks offsets per consumer group in a
// second table (the outbox table grows until pruned by hand), creates its
// tables implicitly on first use unless told otherwise, and names its tables
// after topics rather than one table per outbox. Building the outbox on
// database/sql directly is a few hundred lines, keeps the stored row equal to
// the wire message (inspectable with SQL), and lets one transaction read,
// publish and delete a batch.
// # Refused events
//
// An event the transport refuses for good (larger than it carries, an
// invalid name or event: transport.ErrTooLarge, ErrInvalidName,
// ErrInvalidEvent) would otherwise be retried forever and hold back every
// event behind it. The forwarder publishes such a batch one event at a time,
// moves each refused row, with the error, to the table "<table>_dead"
// (created by the migration), tells the error handler, and goes on with the
// others. Operators read and re-store those rows with SQL.
package outbox
