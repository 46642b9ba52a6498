package transport_test

import (
	"fmt"
	"testing"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/transport"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// The partition of a keyed event, as a publisher in another language
// computes it: FNV-1a (32 bits) of the key's bytes, modulo the partitions.
// On NATS, with the default 8 partitions and prefix, an orders.OrderPlaced
// event keyed "customer-42" goes on herald._keyed.<p>.orders.OrderPlaced.
func ExampleKeyPartition() {
	p := transport.KeyPartition("customer-42", 8)
	fmt.Printf("herald._keyed.%d.orders.OrderPlaced\n", p)
	fmt.Println(transport.KeyPartition("customer-42", 1), transport.KeyPartition("", 8))
	// Output:
	// herald._keyed.6.orders.OrderPlaced
	// 0 5
}
