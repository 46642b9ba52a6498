package rabbitmq_test

import (
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/rabbitmq"
	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(rabbitmqtest.Swept(m)) }

// fast is the tests' config: short nack delays, so that deferred events come
// back within the suite's waits.
func fast(c *rabbitmq.Config) {
	c.NakDelay = 20 * time.Millisecond
	c.MaxNakDelay = 200 * time.Millisecond
}

func TestConformance(t *testing.T) {
	adaptertest.Run(t, func(t *testing.T) adaptertest.Backend {
		br := rabbitmqtest.New(t)
		return func(t *testing.T) transport.Transport { return br.Transport(t, fast) }
	}, adaptertest.Durable())
}
