package adapterkit

import (
	"fmt"
	"hash/fnv"
	"strings"
)

// Hash is 12 hex digits (48 bits) of the FNV-1a hash of s: a short suffix
// that keeps apart the names a broker has to shorten or rewrite.
func Hash(s string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(s))
	return fmt.Sprintf("%012x", h.Sum64()&(1<<48-1))
}

// Squeeze fits name into a broker's alphabet: each byte that legal refuses
// becomes '_', the result is cut to at most max bytes, and sep and
// [Hash](name) follow, so that distinct names ("a.b" and "a_b") stay
// distinct. The result is at most max+13 bytes; legal must accept sep.
func Squeeze(name string, max int, legal func(byte) bool, sep byte) string {
	var b strings.Builder
	b.Grow(min(len(name), max) + 13)
	for i := 0; i < len(name) && b.Len() < max; i++ {
		if c := name[i]; legal(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('_')
		}
	}
	b.WriteByte(sep)
	b.WriteString(Hash(name))
	return b.String()
}
