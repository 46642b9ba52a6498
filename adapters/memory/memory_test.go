package memory_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/adaptertest"
	"github.com/heraldbus/herald/adapters/memory"
	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestConformance(t *testing.T) {
	adaptertest.Run(t, func(t *testing.T) adaptertest.Backend {
		root := memory.New()
		t.Cleanup(func() { _ = root.Close() })
		return func(t *testing.T) transport.Transport { return root.Peer() }
	})
}
