package outbox_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Forwarders, buses, transports and embedded servers are stopped by the test
// that made them: none may leave a goroutine behind.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
