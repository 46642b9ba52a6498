package transport_test

import (
	"hash/fnv"
	"testing"

	"github.com/heraldbus/herald/transport"
)

// KeyPartition is what its doc says a foreign publisher computes: the
// standard 32-bit FNV-1a of the key, modulo n.
func TestKeyPartitionIsFNV1a(t *testing.T) {
	for _, key := range []string{"", "a", "o-1", "customer-42", "ключ", string([]byte{0, 255, 128})} {
		h := fnv.New32a()
		_, _ = h.Write([]byte(key))
		for _, n := range []int{1, 2, 7, 8, 32, 1024} {
			if got, want := transport.KeyPartition(key, n), int(h.Sum32()%uint32(n)); got != want {
				t.Errorf("KeyPartition(%q, %d) = %d, want %d", key, n, got, want)
			}
		}
	}
	if got := transport.KeyPartition("k", 0); got != 0 {
		t.Errorf("KeyPartition with n = 0: %d", got)
	}
}
