package faults_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/rabbitmq/rabbitmqtest"
)

// Every test here must leave no goroutine behind: buses, transports, raw
// connections and embedded servers are closed by the test that made them.
// The RabbitMQ tests' queues and exchanges are deleted once all have run.
func TestMain(m *testing.M) { goleak.VerifyTestMain(rabbitmqtest.Swept(m)) }
