package outbox

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
)

// DefaultTable is the outbox table's name without [WithTable], in the
// connection's search path (usually the public schema).
const DefaultTable = "herald_outbox"

// Defaults of the forwarder's options.
const (
	DefaultBatchSize    = 100
	DefaultPollInterval = time.Second
	DefaultMinBackoff   = 100 * time.Millisecond
	DefaultMaxBackoff   = 10 * time.Second
	// MaxBatchSize bounds [WithBatchSize].
	MaxBatchSize = 10000
)

// Execer is what [Store] writes through: a *sql.Tx (the usual case: the
// event commits or rolls back with the caller's changes), a *sql.Conn or a
// *sql.DB (the event is stored at once, in a transaction of its own).
type Execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// Outbox stores events in a Postgres table inside the caller's transactions
// ([Store]) and relays them to a bus's transport once committed ([Outbox.Forward]).
// It is safe for concurrent use; the zero value is not usable: build one with
// [New]. It owns nothing: the caller keeps ownership of the *sql.DB and the bus
// and closes them after the forwarder returned.
type Outbox struct {
	db  *sql.DB
	b   *bus.Bus
	cfg config

	table   string // qualified, as validated
	channel string // the LISTEN/NOTIFY channel
	lockKey int64  // the advisory lock of the forwarder

	insertSQL, selectSQL, deleteSQL string
	deadSQL                         string // moves a row the transport refuses for good to <table>_dead

	afterRound func(n int, err error) // tests: called after every round
}

type config struct {
	table        string
	batchSize    int
	pollInterval time.Duration
	minBackoff   time.Duration
	maxBackoff   time.Duration
	onError      func(error)
}

// Option configures an [Outbox]. Options validate their arguments: a bad one
// makes [New] fail with an error wrapping [transport.ErrInvalidOption].
type Option func(*config) error

func invalid(format string, args ...any) error {
	return fmt.Errorf("herald/outbox: %w: %s", transport.ErrInvalidOption, fmt.Sprintf(format, args...))
}

// identPart is one part of a table name: a lower-case Postgres identifier
// that needs no quoting, short enough to name the index after it.
var identPart = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,49}$`)

// WithTable sets the outbox table: "table" (in the search path) or
// "schema.table"; each part a lower-case identifier of at most 50 characters
// (letters, digits, underscores). Several outboxes with different tables are
// independent; every forwarder of one table shares its lock.
func WithTable(name string) Option {
	return func(c *config) error {
		parts := strings.Split(name, ".")
		if len(parts) > 2 {
			return invalid("table %q: want table or schema.table", name)
		}
		for _, p := range parts {
			if !identPart.MatchString(p) {
				return invalid("table %q: %q is not a lower-case identifier of 1 to 50 characters", name, p)
			}
		}
		c.table = name
		return nil
	}
}

// WithBatchSize bounds how many events the forwarder publishes in one
// database transaction, from 1 to [MaxBatchSize]; default [DefaultBatchSize].
func WithBatchSize(n int) Option {
	return func(c *config) error {
		if n < 1 || n > MaxBatchSize {
			return invalid("batch size %d: want 1 to %d", n, MaxBatchSize)
		}
		c.batchSize = n
		return nil
	}
}

// WithPollInterval sets how often an idle forwarder looks at the table when
// no notification woke it, from 10ms to 1 hour; default
// [DefaultPollInterval]. Notifications make delivery prompt; the poll catches
// what they cannot (a notification lost while the listener reconnects).
// Events held back by an older transaction still in progress (see the
// package documentation) do not wait for the poll: while there are any, the
// forwarder looks again after the minimum backoff ([WithBackoff]), doubling
// up to the poll interval, as that transaction may end without a
// notification (it stored no event).
func WithPollInterval(d time.Duration) Option {
	return func(c *config) error {
		if d < 10*time.Millisecond || d > time.Hour {
			return invalid("poll interval %v: want 10ms to 1h", d)
		}
		c.pollInterval = d
		return nil
	}
}

// WithBackoff sets the forwarder's wait after a failed batch (the transport
// or the database is down): min after the first failure, doubling up to max;
// default [DefaultMinBackoff] to [DefaultMaxBackoff]. Both from 1ms to 1
// hour, min at most max.
func WithBackoff(minWait, maxWait time.Duration) Option {
	return func(c *config) error {
		if minWait < time.Millisecond || maxWait > time.Hour || minWait > maxWait {
			return invalid("backoff %v to %v: want 1ms <= min <= max <= 1h", minWait, maxWait)
		}
		c.minBackoff, c.maxBackoff = minWait, maxWait
		return nil
	}
}

// WithErrorHandler sets the function the forwarder reports its errors to
// (a failed batch, a lost listener connection): it keeps going after each.
// The default logs them with the bus's logger. f is called from the
// forwarder's goroutines, one call at a time per goroutine; it must not block.
func WithErrorHandler(f func(error)) Option {
	return func(c *config) error {
		if f == nil {
			return invalid("nil error handler")
		}
		c.onError = f
		return nil
	}
}

// New returns an outbox on db's table (see [WithTable]) for b's events. db
// must use the pgx driver (github.com/jackc/pgx/v5/stdlib) for the
// forwarder's notifications; with another Postgres driver, the forwarder
// falls back to polling. New does not touch the database: create the table
// with [Outbox.Migrate] or with the SQL of [MigrationSQL] in your own
// migrations.
func New(db *sql.DB, b *bus.Bus, opts ...Option) (*Outbox, error) {
	if db == nil || b == nil {
		return nil, invalid("nil database or bus")
	}
	cfg := config{
		table:        DefaultTable,
		batchSize:    DefaultBatchSize,
		pollInterval: DefaultPollInterval,
		minBackoff:   DefaultMinBackoff,
		maxBackoff:   DefaultMaxBackoff,
	}
	for _, o := range opts {
		if o == nil {
			return nil, invalid("nil option")
		}
		if err := o(&cfg); err != nil {
			return nil, err
		}
	}
	if cfg.onError == nil {
		logger := b.Logger()
		cfg.onError = func(err error) { logger.Warn("herald/outbox: forwarder: " + err.Error()) }
	}
	h := fnv.New64a()
	h.Write([]byte("herald/outbox:" + cfg.table))
	sum := h.Sum64()
	o := &Outbox{
		db:      db,
		b:       b,
		cfg:     cfg,
		table:   cfg.table,
		channel: fmt.Sprintf("herald_outbox_%016x", sum),
		lockKey: int64(sum),
	}
	o.insertSQL = `WITH ins AS (INSERT INTO ` + o.table + ` (topic, event_id, payload, metadata) VALUES ($1, $2, $3, $4::jsonb) RETURNING 1)
SELECT pg_notify($5, '') FROM ins`
	// The ready rows in order, then, if any row is held back (committed, but
	// by a transaction younger than one still in progress), one row with seq
	// -1 that says so. One statement: one snapshot for both.
	o.selectSQL = `(SELECT seq, topic, event_id, payload, metadata::text FROM ` + o.table + `
WHERE xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY xid, seq LIMIT $1)
UNION ALL
(SELECT -1, '', '', ''::bytea, '' FROM ` + o.table + `
WHERE xid >= pg_snapshot_xmin(pg_current_snapshot()) LIMIT 1)`
	o.deleteSQL = `DELETE FROM ` + o.table + ` WHERE seq = ANY($1)`
	o.deadSQL = `INSERT INTO ` + o.table + `_dead (seq, topic, event_id, payload, metadata, stored_at, error)
	SELECT seq, topic, event_id, payload, metadata, stored_at, $2 FROM ` + o.table + ` WHERE seq = $1`
	return o, nil
}

// Table returns the outbox table's name, as given to [WithTable].
func (o *Outbox) Table() string { return o.table }

// Channel returns the channel a committed [Store] notifies and the forwarder
// listens to (LISTEN/NOTIFY), derived from the table's name: for operators
// looking at pg_stat_activity.
func (o *Outbox) Channel() string { return o.channel }

// MigrationSQL returns the SQL that creates the outbox table named table
// ("table" or "schema.table", as [WithTable] takes it) and its index, for a
// migration tool. It is idempotent (IF NOT EXISTS). The table:
//
//	seq       bigint identity primary key  -- insertion order within a transaction
//	xid       xid8 default pg_current_xact_id()  -- the storing transaction
//	topic     text      -- the event's name
//	event_id  text      -- the event ID, the message ID on the transport
//	payload   bytea     -- the event encoded by the bus's codec
//	metadata  jsonb     -- the wire metadata (IDs, correlation, options)
//	stored_at timestamptz
//
// and an index on (xid, seq), the forwarding order. It needs Postgres 13 or
// later (xid8).
func MigrationSQL(table string) (string, error) {
	var c config
	if err := WithTable(table)(&c); err != nil {
		return "", err
	}
	var sb strings.Builder
	index := table
	if schema, name, ok := strings.Cut(table, "."); ok {
		fmt.Fprintf(&sb, "CREATE SCHEMA IF NOT EXISTS %s;\n", schema)
		index = name
	}
	fmt.Fprintf(&sb, `CREATE TABLE IF NOT EXISTS %s (
	seq       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	xid       xid8 NOT NULL DEFAULT pg_current_xact_id(),
	topic     text NOT NULL,
	event_id  text NOT NULL,
	payload   bytea NOT NULL,
	metadata  jsonb NOT NULL,
	stored_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS %s_order ON %s (xid, seq);
CREATE TABLE IF NOT EXISTS %s_dead (
	seq       bigint PRIMARY KEY,
	topic     text NOT NULL,
	event_id  text NOT NULL,
	payload   bytea NOT NULL,
	metadata  jsonb NOT NULL,
	stored_at timestamptz NOT NULL,
	error     text NOT NULL,
	dead_at   timestamptz NOT NULL DEFAULT now()
);
`, table, index, table, table)
	return sb.String(), nil
}

// Migrate creates the outbox table and its index if they do not exist (the
// SQL of [MigrationSQL]), in one transaction, holding the forwarder's lock so
// that concurrent calls do not collide. Call it on request, at deployment or
// start-up; nothing else creates the table. It honours ctx.
func (o *Outbox) Migrate(ctx context.Context) error {
	ddl, err := MigrationSQL(o.table)
	if err != nil {
		return err
	}
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("herald/outbox: migrate %s: %w", o.table, err)
	}
	defer func() { _ = tx.Rollback() }()
	if _, err := tx.ExecContext(ctx, "SELECT pg_advisory_xact_lock($1)", o.lockKey); err != nil {
		return fmt.Errorf("herald/outbox: migrate %s: %w", o.table, err)
	}
	if _, err := tx.ExecContext(ctx, ddl); err != nil {
		return fmt.Errorf("herald/outbox: migrate %s: %w", o.table, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("herald/outbox: migrate %s: %w", o.table, err)
	}
	return nil
}

// Store stores e in the outbox through tx, to be published once tx commits;
// if tx rolls back, e is never published. The event is encoded exactly as
// [bus.Publish] would publish it (see [bus.Encode]): same ID, correlation and
// causation IDs from ctx (a handler's context makes it a consequence of the
// event being handled), same options. The forwarder publishes it with its
// event ID as the message ID, so a transport that deduplicates (NATS) drops
// a second publish of it.
//
// Store does not need the bus to be started. It is safe for concurrent use
// (on different transactions, as database/sql requires) and honours ctx.
// Errors: those of [bus.Encode] (errors.Is bus.ErrInvalidEvent, ...), or the
// database's, wrapped.
func Store[E any](ctx context.Context, o *Outbox, tx Execer, e E, opts ...bus.PublishOption) error {
	if tx == nil {
		return errors.New("herald/outbox: store: nil transaction")
	}
	topic, msg, err := bus.Encode(ctx, o.b, e, opts...)
	if err != nil {
		return err
	}
	md, err := json.Marshal(msg.Metadata)
	if err != nil {
		return fmt.Errorf("herald/outbox: store %s: metadata: %w", topic, err)
	}
	if _, err := tx.ExecContext(ctx, o.insertSQL, topic, msg.UUID, msg.Payload, string(md), o.channel); err != nil {
		return fmt.Errorf("herald/outbox: store %s in %s: %w", topic, o.table, err)
	}
	return nil
}
