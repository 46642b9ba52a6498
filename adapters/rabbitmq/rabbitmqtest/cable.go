package rabbitmqtest

import (
	"errors"
	"net"
	"sync"
	"time"
)

// ErrCableCut is the error of a dial while a [Cable] is down.
var ErrCableCut = errors.New("rabbitmqtest: cable cut")

// Cable is a transport's TCP connections to the broker, which a test can cut
// as a crash or a network failure would. Set Config.AMQP.Dial to its Dial.
type Cable struct {
	mu    sync.Mutex
	conns []net.Conn
	down  bool
}

// Dial dials the broker and records the connection; while the cable is
// down it fails with [ErrCableCut].
func (c *Cable) Dial(network, addr string) (net.Conn, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.down {
		return nil, ErrCableCut
	}
	conn, err := net.DialTimeout(network, addr, 5*time.Second)
	if err == nil {
		c.conns = append(c.conns, conn)
	}
	return conn, err
}

// Cut closes every connection abruptly. With down, later dials fail until
// [Cable.Mend]; without, the transport may reconnect at once.
func (c *Cable) Cut(down bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = down
	for _, conn := range c.conns {
		_ = conn.Close()
	}
	c.conns = nil
}

// Mend lets dials through again.
func (c *Cable) Mend() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.down = false
}
