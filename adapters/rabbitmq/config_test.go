package rabbitmq_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/transport"
)

// Every out-of-range field is refused before anything is dialled.
func TestConfigInvalid(t *testing.T) {
	long := make([]byte, 101)
	for i := range long {
		long[i] = 'a'
	}
	for name, c := range map[string]rabbitmq.Config{
		"bad URL":                {URL: "http://127.0.0.1:5672/"},
		"prefix with space":      {Prefix: "a b"},
		"prefix with wildcard #": {Prefix: "herald.#"},
		"prefix too long":        {Prefix: string(long)},
		"negative prefetch":      {Prefetch: -1},
		"prefetch too large":     {Prefetch: 65536},
		"negative NakDelay":      {NakDelay: -time.Second},
		"NakDelay over a day":    {NakDelay: 25 * time.Hour},
		"PublishTimeout tiny":    {PublishTimeout: time.Microsecond},
		"PoisonMaxAge tiny":      {PoisonMaxAge: time.Millisecond},
		"message size too large": {MaxMessageSize: 1 << 30},
		"too many channels":      {PublisherChannels: 65},
		"negative ReconnectWait": {ReconnectWait: -1},
	} {
		t.Run(name, func(t *testing.T) {
			tr, err := rabbitmq.New(c)
			if !errors.Is(err, transport.ErrInvalidOption) {
				if tr != nil {
					_ = tr.Close()
				}
				t.Fatalf("New = %v, want ErrInvalidOption", err)
			}
		})
	}
	if _, err := rabbitmq.New(rabbitmq.Config{}, nil); !errors.Is(err, transport.ErrInvalidOption) {
		t.Errorf("nil option: %v", err)
	}
	if _, err := rabbitmq.New(rabbitmq.Config{}, rabbitmq.WithLogger(nil)); !errors.Is(err, transport.ErrInvalidOption) {
		t.Errorf("nil logger: %v", err)
	}
}

// An unreachable broker fails New at once (a refused connection), with the
// password hidden.
func TestNewUnreachable(t *testing.T) {
	begin := time.Now()
	_, err := rabbitmq.New(rabbitmq.Config{URL: "amqp://user:secret@127.0.0.1:1/", ConnectTimeout: 2 * time.Second})
	if err == nil {
		t.Fatal("New on a closed port succeeded")
	}
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("New took %v with a 2s ConnectTimeout", d)
	}
	if msg := err.Error(); !strings.Contains(msg, "user:***@") || strings.Contains(msg, "secret") {
		t.Errorf("error %q should name the URL without its password", msg)
	}
}
