package adaptertest

import (
	"testing"

	"github.com/heraldbus/herald/transport"
)

// Edited returns cfg changed by each edit in turn: the base configuration
// of a test harness, with a test's own changes.
func Edited[C any](cfg C, edit ...func(*C)) C {
	for _, e := range edit {
		e(&cfg)
	}
	return cfg
}

// Open returns the transport that open (an adapter's New) makes of cfg,
// closed when t ends: a bus that owns it may close it first, Close being
// idempotent. It fails t if open fails.
func Open[C any, T transport.Transport](t testing.TB, open func(C) (T, error), cfg C) T {
	t.Helper()
	tr, err := open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

// RunOn runs the suite once per broker of brokers, each as a subtest named
// by its key: the broker's function makes the shared server of one run (an
// embedded server, or a namespace of the test's own on a machine's server)
// and connect makes each transport on it.
func RunOn[B any](t *testing.T, brokers map[string]func(*testing.T) B, connect func(*testing.T, B) transport.Transport, opts ...Option) {
	for name, newBroker := range brokers {
		t.Run(name, func(t *testing.T) {
			Run(t, func(t *testing.T) Backend {
				b := newBroker(t)
				return func(t *testing.T) transport.Transport { return connect(t, b) }
			}, opts...)
		})
	}
}

// Each runs fn once per broker of brokers, each as a subtest named by its
// key, on a broker made for it.
func Each[B any](t *testing.T, brokers map[string]func(*testing.T) B, fn func(*testing.T, B)) {
	for name, newBroker := range brokers {
		t.Run(name, func(t *testing.T) { fn(t, newBroker(t)) })
	}
}
