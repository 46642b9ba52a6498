package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/transport"
)

// link owns the transport's one AMQP connection and replaces it when it is
// lost: a single goroutine (run) watches the connection, and once it closes
// dials again with a growing wait until it succeeds or the transport closes.
// Publishers and consumers ask for the current connection with get, which
// waits while there is none.
type link struct {
	cfg    Config
	log    *zap.Logger
	closed <-chan struct{} // the transport is closing: get gives up
	stop   chan struct{}   // closed last: run closes the connection and returns

	mu    sync.Mutex
	conn  *amqp.Connection // nil while reconnecting
	ready chan struct{}    // closed while conn is set
	done  chan struct{}    // closed when run returns
}

// dial connects once, bounded by ConnectTimeout.
func dial(cfg Config) (*amqp.Connection, error) {
	conn, err := amqp.DialConfig(cfg.URL, cfg.AMQP)
	if err != nil {
		return nil, fmt.Errorf("herald/rabbitmq: connect to %s: %w", redact(cfg.URL), err)
	}
	return conn, nil
}

// newLink starts supervising conn, an open connection.
func newLink(cfg Config, conn *amqp.Connection, closed <-chan struct{}) *link {
	l := &link{cfg: cfg, log: cfg.Logger, closed: closed, stop: make(chan struct{}), conn: conn, ready: make(chan struct{}), done: make(chan struct{})}
	close(l.ready)
	go l.run(conn)
	return l
}

func (l *link) run(conn *amqp.Connection) {
	defer close(l.done)
	for {
		lost := conn.NotifyClose(make(chan *amqp.Error, 1))
		select {
		case err := <-lost:
			l.log.Warn("rabbitmq connection lost; reconnecting", zap.Error(errOrNil(err)))
		case <-l.stop:
			_ = conn.CloseDeadline(time.Now().Add(l.cfg.RequestTimeout))
			return
		}
		l.mu.Lock()
		l.conn, l.ready = nil, make(chan struct{})
		l.mu.Unlock()
		wait := l.cfg.ReconnectWait
		for {
			timer := time.NewTimer(wait)
			select {
			case <-timer.C:
			case <-l.stop:
				timer.Stop()
				return
			}
			c, err := dial(l.cfg)
			if err == nil {
				conn = c
				break
			}
			l.log.Debug("rabbitmq reconnect failed", zap.Error(err), zap.Duration("next_in", wait))
			wait = min(2*wait, l.cfg.MaxReconnectWait)
		}
		l.log.Info("rabbitmq reconnected", zap.String("url", redact(l.cfg.URL)))
		l.mu.Lock()
		l.conn = conn
		close(l.ready)
		l.mu.Unlock()
	}
}

// shutdown closes the connection and waits for run to return.
func (l *link) shutdown() {
	close(l.stop)
	<-l.done
}

// errOrNil turns a nil *amqp.Error into a nil error.
func errOrNil(err *amqp.Error) error {
	if err == nil {
		return nil
	}
	return err
}

// get returns the current connection, waiting while there is none until ctx
// ends or the transport closes.
func (l *link) get(ctx context.Context) (*amqp.Connection, error) {
	for {
		l.mu.Lock()
		conn, ready := l.conn, l.ready
		l.mu.Unlock()
		if conn != nil && !conn.IsClosed() {
			return conn, nil
		}
		if conn != nil {
			// Closed, and run has not noticed yet: wait for it to.
			select {
			case <-time.After(time.Millisecond):
				continue
			case <-ctx.Done():
				return nil, fmt.Errorf("waiting for the connection to %s: %w", redact(l.cfg.URL), ctx.Err())
			case <-l.closed:
				return nil, transport.ErrClosed
			}
		}
		select {
		case <-ready:
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for the connection to %s: %w", redact(l.cfg.URL), ctx.Err())
		case <-l.closed:
			return nil, transport.ErrClosed
		}
	}
}

// channel opens a channel on the current connection.
func (l *link) channel(ctx context.Context) (*amqp.Channel, error) {
	for {
		conn, err := l.get(ctx)
		if err != nil {
			return nil, err
		}
		ch, err := conn.Channel()
		if errors.Is(err, amqp.ErrClosed) {
			continue // lost meanwhile: wait for the next one
		}
		if err != nil {
			return nil, fmt.Errorf("open channel: %w", err)
		}
		return ch, nil
	}
}

// redact hides the password of an AMQP URL.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return raw
	}
	if pw, ok := u.User.Password(); ok && pw != "" {
		return strings.Replace(raw, ":"+pw+"@", ":***@", 1)
	}
	return raw
}
