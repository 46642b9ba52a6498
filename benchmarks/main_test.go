package benchmarks

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the run if a benchmark leaves a goroutine behind: every
// bus, router, connection and server must be closed by then.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
