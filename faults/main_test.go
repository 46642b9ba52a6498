package faults_test

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test here must leave no goroutine behind: buses, transports, raw
// connections and embedded servers are closed by the test that made them.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
