// Package redisdedup is a Redis-backed middleware.DedupStore, so that the
// replicas of a handler (several processes with the same handler name) share
// which events they completed.
package redisdedup

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Store keeps done keys in Redis as "<Prefix><key>" with a TTL.
type Store struct {
	c      redis.UniversalClient
	prefix string
}

// New returns a store on c; keys get prefix (default "herald:dedup:"). The
// caller owns c.
func New(c redis.UniversalClient, prefix string) *Store {
	if prefix == "" {
		prefix = "herald:dedup:"
	}
	return &Store{c: c, prefix: prefix}
}

// Done reports whether key is marked.
func (s *Store) Done(ctx context.Context, key string) (bool, error) {
	n, err := s.c.Exists(ctx, s.prefix+key).Result()
	return n == 1, err
}

// MarkDone marks key for ttl (at least one millisecond).
func (s *Store) MarkDone(ctx context.Context, key string, ttl time.Duration) error {
	return s.c.Set(ctx, s.prefix+key, 1, max(ttl, time.Millisecond)).Err()
}
