package outbox

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
)

// Forward relays the outbox's committed events to the bus's transport until
// ctx is done, then returns nil once its goroutines have stopped. Run it
// after the bus started (a transport that is not ready fails the batch, which
// is retried). Several forwarders, in one process or many, may run on one
// table: one forwards at a time (an advisory lock), the others take over
// when it stops or loses its connection.
//
// Each round, in one database transaction: take the table's advisory lock
// (or wait, when another forwarder holds it), read up to the batch size of
// events in forwarding order (see the package documentation), publish them
// in that order through the transport (PublishBatch when it is a
// [transport.BatchPublisher]) with their event IDs as message IDs, delete
// them, commit. A failure anywhere rolls the transaction back: the events
// stay and are published again, which the transport's deduplication (NATS,
// within its duplicate window) turns into one delivery. After a failure the
// forwarder waits (see [WithBackoff]); every error goes to the error handler
// ([WithErrorHandler]).
//
// Between rounds an idle forwarder waits for a notification (sent by the
// commit of a transaction that stored events) on a connection of its own
// from db's pool, or for the poll interval ([WithPollInterval]); sooner
// while events are held back by an older transaction still in progress.
func (o *Outbox) Forward(ctx context.Context) error {
	wake := make(chan struct{}, 1)
	lctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { o.listen(lctx, wake) })
	defer func() {
		cancel()
		wg.Wait()
	}()

	pub := bus.TransportOf(o.b)
	poll := time.NewTimer(o.cfg.pollInterval)
	defer poll.Stop()
	var backoff, recheck time.Duration
	for {
		n, held, err := o.forwardBatch(ctx, pub)
		if ctx.Err() != nil {
			return nil
		}
		if o.afterRound != nil {
			o.afterRound(n, err)
		}
		var wait <-chan struct{}
		switch {
		case err != nil:
			o.cfg.onError(err)
			backoff = min(max(2*backoff, o.cfg.minBackoff), o.cfg.maxBackoff)
			poll.Reset(backoff)
		case n == o.cfg.batchSize:
			backoff = 0
			continue // more may be waiting
		case held:
			// Events wait behind an older transaction, which may end
			// without a notification: look again soon.
			backoff = 0
			recheck = min(max(2*recheck, o.cfg.minBackoff), o.cfg.maxBackoff, o.cfg.pollInterval)
			poll.Reset(recheck)
			wait = wake
		default:
			backoff, recheck = 0, 0
			poll.Reset(o.cfg.pollInterval)
			wait = wake
		}
		select {
		case <-ctx.Done():
			return nil
		case <-poll.C:
		case <-wait:
		}
	}
}

// row is one stored event.
type row struct {
	seq   int64
	topic string
	msg   *message.Message
}

// forwardBatch forwards one batch and returns how many events it forwarded
// (0 when another forwarder holds the lock or nothing is ready), and whether
// committed events are held back by an older transaction still in progress.
func (o *Outbox) forwardBatch(ctx context.Context, t transport.Transport) (n int, held bool, err error) {
	tx, err := o.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, false, fmt.Errorf("herald/outbox: forward %s: begin: %w", o.table, err)
	}
	defer func() { _ = tx.Rollback() }()
	var locked bool
	if err := tx.QueryRowContext(ctx, "SELECT pg_try_advisory_xact_lock($1)", o.lockKey).Scan(&locked); err != nil {
		return 0, false, fmt.Errorf("herald/outbox: forward %s: lock: %w", o.table, err)
	}
	if !locked {
		return 0, false, nil
	}
	rows, held, err := o.read(ctx, tx)
	if err != nil || len(rows) == 0 {
		return 0, held, err
	}
	if err := publish(ctx, t, rows); err != nil {
		if !refused(err) {
			return 0, held, fmt.Errorf("herald/outbox: forward %s: %w", o.table, err)
		}
		// The transport refuses an event for good (too large, an invalid
		// name or event): find it, one at a time, and move it aside to
		// <table>_dead with the error, so that it does not hold back the
		// events behind it forever.
		if err := o.publishEach(ctx, tx, t, rows); err != nil {
			return 0, held, fmt.Errorf("herald/outbox: forward %s: %w", o.table, err)
		}
	}
	seqs := make([]int64, len(rows))
	for i, r := range rows {
		seqs[i] = r.seq
	}
	if _, err := tx.ExecContext(ctx, o.deleteSQL, seqs); err != nil {
		return 0, held, fmt.Errorf("herald/outbox: forward %s: delete: %w", o.table, err)
	}
	if err := tx.Commit(); err != nil {
		return 0, held, fmt.Errorf("herald/outbox: forward %s: commit: %w", o.table, err)
	}
	return len(rows), held, nil
}

// read reads the next batch of ready rows in forwarding order, and whether
// any committed row is held back by an older transaction in progress.
func (o *Outbox) read(ctx context.Context, tx *sql.Tx) (out []row, held bool, err error) {
	rs, err := tx.QueryContext(ctx, o.selectSQL, o.cfg.batchSize)
	if err != nil {
		return nil, false, fmt.Errorf("herald/outbox: forward %s: read: %w", o.table, err)
	}
	defer rs.Close()
	for rs.Next() {
		var (
			r       row
			id, md  string
			payload []byte
		)
		if err := rs.Scan(&r.seq, &r.topic, &id, &payload, &md); err != nil {
			return nil, false, fmt.Errorf("herald/outbox: forward %s: read: %w", o.table, err)
		}
		if r.seq < 0 { // the marker of held-back rows
			held = true
			continue
		}
		r.msg = message.NewMessage(id, payload)
		if err := json.Unmarshal([]byte(md), &r.msg.Metadata); err != nil {
			return nil, false, fmt.Errorf("herald/outbox: forward %s: event %s: metadata: %w", o.table, id, err)
		}
		r.msg.SetContext(ctx)
		out = append(out, r)
	}
	if err := rs.Err(); err != nil {
		return nil, false, fmt.Errorf("herald/outbox: forward %s: read: %w", o.table, err)
	}
	return out, held, nil
}

// refused reports whether err is a transport's refusal that no retry can
// change.
func refused(err error) bool {
	return errors.Is(err, transport.ErrTooLarge) || errors.Is(err, transport.ErrInvalidName) ||
		errors.Is(err, transport.ErrInvalidEvent)
}

// publishEach publishes rows one at a time, in order, moving each that the
// transport refuses for good to the dead table (in tx, committed with the
// deletion of the batch).
func (o *Outbox) publishEach(ctx context.Context, tx *sql.Tx, t transport.Transport, rows []row) error {
	for _, r := range rows {
		err := publish(ctx, t, []row{r})
		if err == nil {
			continue
		}
		if !refused(err) {
			return err
		}
		if _, derr := tx.ExecContext(ctx, o.deadSQL, r.seq, err.Error()); derr != nil {
			return fmt.Errorf("event %s refused (%w); moving it aside: %w", r.msg.UUID, err, derr)
		}
		o.cfg.onError(fmt.Errorf("herald/outbox: event %s moved to %s_dead: %w", r.msg.UUID, o.table, err))
	}
	return nil
}

// publish publishes rows in order, each run of one topic at once.
func publish(ctx context.Context, t transport.Transport, rows []row) error {
	bp, batch := t.(transport.BatchPublisher)
	for len(rows) > 0 {
		n := 1
		for n < len(rows) && rows[n].topic == rows[0].topic {
			n++
		}
		msgs := make([]*message.Message, n)
		for i := range n {
			msgs[i] = rows[i].msg
		}
		var err error
		if batch {
			err = bp.PublishBatch(ctx, rows[0].topic, msgs)
		} else {
			err = t.Publisher().Publish(rows[0].topic, msgs...)
		}
		if err != nil {
			return fmt.Errorf("publish %d %s: %w", n, rows[0].topic, err)
		}
		rows = rows[n:]
	}
	return nil
}

// listen keeps a connection listening to the outbox's channel and signals
// wake on every notification, and whenever it (re)connects, as notifications
// may have been missed meanwhile. It returns when ctx is done.
func (o *Outbox) listen(ctx context.Context, wake chan<- struct{}) {
	var backoff time.Duration
	for {
		err := o.listenOnce(ctx, wake)
		if ctx.Err() != nil {
			return
		}
		o.cfg.onError(err)
		if errors.Is(err, errNotPgx) {
			return // polling only
		}
		backoff = min(max(2*backoff, o.cfg.minBackoff), o.cfg.maxBackoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

var errNotPgx = errors.New("herald/outbox: the database does not use the pgx driver (github.com/jackc/pgx/v5/stdlib): no notifications, the forwarder polls")

func (o *Outbox) listenOnce(ctx context.Context, wake chan<- struct{}) error {
	conn, err := o.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("herald/outbox: listen: %w", err)
	}
	defer conn.Close()
	var cause error
	_ = conn.Raw(func(dc any) error {
		c, ok := dc.(*stdlib.Conn)
		if !ok {
			cause = errNotPgx
			return nil
		}
		cause = o.wait(ctx, c.Conn(), wake)
		// The connection listens: never give it back to the pool.
		return driver.ErrBadConn
	})
	return cause
}

func (o *Outbox) wait(ctx context.Context, c *pgx.Conn, wake chan<- struct{}) error {
	if _, err := c.Exec(ctx, "LISTEN "+pgx.Identifier{o.channel}.Sanitize()); err != nil {
		return fmt.Errorf("herald/outbox: listen: %w", err)
	}
	for {
		select {
		case wake <- struct{}{}:
		default:
		}
		if _, err := c.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("herald/outbox: listen: %w", err)
		}
	}
}
