// Package redisdedup is a Redis-backed middleware.DedupStore, so that the
// replicas of a handler (several processes with the same handler name) share
// which events they completed.
package redisdedup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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

const doneValue = "done"

// Begin claims key with SET NX and a random token for lease; if the key exists,
// it reports whether it is done (token "") or claimed by another (token "").
func (s *Store) Begin(ctx context.Context, key string, lease time.Duration) (done bool, token string, err error) {
	var b [12]byte
	_, _ = rand.Read(b[:])
	token = "claim:" + hex.EncodeToString(b[:])
	ok, err := s.c.SetNX(ctx, s.prefix+key, token, max(lease, time.Millisecond)).Result()
	if err != nil {
		return false, "", err
	}
	if ok {
		return false, token, nil
	}
	v, err := s.c.Get(ctx, s.prefix+key).Result()
	if err == redis.Nil { // expired in between: the next delivery claims it
		return false, "", nil
	}
	return v == doneValue, "", err
}

// Finish marks key done for ttl (at least one millisecond).
func (s *Store) Finish(ctx context.Context, key string, ttl time.Duration) error {
	return s.c.Set(ctx, s.prefix+key, doneValue, max(ttl, time.Millisecond)).Err()
}

// abandonScript deletes the key only while it holds this claim's token.
var abandonScript = redis.NewScript(`if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) end return 0`)

// Abandon drops the claim token on key, if it is still there.
func (s *Store) Abandon(ctx context.Context, key, token string) error {
	return abandonScript.Run(ctx, s.c, []string{s.prefix + key}, token).Err()
}
