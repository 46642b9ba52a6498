package nats

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"

	"github.com/heraldbus/herald/transport"
)

// Delivery tracking (bus.WithTracking) keeps its records in the JetStream
// key-value bucket TrackBucket ("<StreamName>_TRACK", characters a bucket name
// cannot hold made '_'), created at Start with the tracking ttl as its TTL and
// a history of 64 values per key. The key of (event ID, handler) is
// "<token(event ID)>.<token(handler)>", where token is the base64url encoding
// (no padding) of a string up to 96 bytes, and '=' followed by the hex
// SHA-256 of a longer one. Each state change is one Put of the record's JSON;
// Deliveries reads an event's keys with their history and merges each key's
// values (transport.Delivery.Merge), so that records written out of order,
// by several processes, never show a delivery going back.

var _ transport.Tracker = (*Transport)(nil)

// trackHistory is how many values of a key the bucket keeps: more than the
// state changes of a delivery with the default retry policy (2 per attempt).
const trackHistory = 64

// tracker is the transport's tracking store.
type tracker struct {
	t   *Transport
	ttl time.Duration

	mu sync.Mutex
	kv jetstream.KeyValue // nil until made (or after the bucket was found missing)
}

// DeliveryStore returns the transport's tracking store, whose records live
// ttl after their last put. The bucket is created (or checked) at Start, or
// on first use.
func (t *Transport) DeliveryStore(ttl time.Duration) (transport.DeliveryStore, error) {
	if ttl <= 0 {
		return nil, invalid("tracking ttl %v <= 0", ttl)
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.track == nil {
		t.track = &tracker{t: t, ttl: ttl}
	}
	return t.track, nil
}

// TrackBucket returns the name of the key-value bucket of tracking records.
func (t *Transport) TrackBucket() string {
	name := t.cfg.StreamName
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			name = token(name, 40)
			break
		}
	}
	return name + "_TRACK"
}

// bucket returns the bucket, creating it when needed.
func (tr *tracker) bucket(ctx context.Context) (jetstream.KeyValue, error) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.kv != nil {
		return tr.kv, nil
	}
	t := tr.t
	if t.isClosed() {
		return nil, transport.ErrClosed
	}
	ctx, cancel := t.requestCtx(ctx)
	defer cancel()
	cfg := jetstream.KeyValueConfig{
		Bucket:      t.TrackBucket(),
		Description: "Herald delivery tracking",
		History:     trackHistory,
		TTL:         tr.ttl,
		Storage:     t.cfg.Storage,
		Replicas:    t.cfg.Replicas,
	}
	kv, err := t.js.CreateKeyValue(ctx, cfg)
	if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		kv, err = t.js.KeyValue(ctx, cfg.Bucket)
		if err == nil {
			if st, serr := kv.Status(ctx); serr == nil && st.TTL() != tr.ttl {
				t.cfg.Logger.Warn("the tracking bucket exists with another TTL; it keeps its own",
					zap.String("bucket", cfg.Bucket), zap.Duration("ttl", st.TTL()), zap.Duration("wanted", tr.ttl))
			}
		}
	} else if err == nil {
		t.cfg.Logger.Info("tracking bucket created", zap.String("bucket", cfg.Bucket), zap.Duration("ttl", tr.ttl))
	}
	if err != nil {
		return nil, fmt.Errorf("herald/nats: tracking bucket %q: %w", cfg.Bucket, err)
	}
	tr.kv = kv
	return kv, nil
}

// lost forgets the bucket after an operation found it missing (a server with
// memory storage restarted): the next use creates it again.
func (tr *tracker) lost(kv jetstream.KeyValue, err error) bool {
	if !streamMissing(err) && !errors.Is(err, jetstream.ErrBucketNotFound) {
		return false
	}
	tr.mu.Lock()
	defer tr.mu.Unlock()
	if tr.kv == kv {
		tr.kv = nil
	}
	return true
}

// trackKeyToken makes s a key token (see the comment at the top).
func trackKeyToken(s string) string {
	if len(s) <= 96 {
		return base64.RawURLEncoding.EncodeToString([]byte(s))
	}
	sum := sha256.Sum256([]byte(s))
	return "=" + hex.EncodeToString(sum[:])
}

// PutDelivery puts d's JSON under its key: one KV put.
func (tr *tracker) PutDelivery(ctx context.Context, d transport.Delivery) error {
	body, err := json.Marshal(d)
	if err != nil {
		return fmt.Errorf("herald/nats: tracking record: %w", err)
	}
	key := trackKeyToken(d.EventID) + "." + trackKeyToken(d.Handler)
	for try := 0; ; try++ {
		kv, err := tr.bucket(ctx)
		if err != nil {
			return err
		}
		_, err = kv.Put(ctx, key, body)
		if err == nil || try > 0 || !tr.lost(kv, err) {
			if err != nil {
				return fmt.Errorf("herald/nats: put tracking record: %w", err)
			}
			return nil
		}
	}
}

// Deliveries reads every value of the event's keys and merges them by
// handler.
func (tr *tracker) Deliveries(ctx context.Context, eventID string) ([]transport.Delivery, error) {
	kv, err := tr.bucket(ctx)
	if err != nil {
		return nil, err
	}
	ctx, cancel := tr.t.requestCtx(ctx)
	defer cancel()
	w, err := kv.Watch(ctx, trackKeyToken(eventID)+".*", jetstream.IncludeHistory())
	if err != nil {
		if tr.lost(kv, err) {
			return nil, nil // the bucket is gone, and its records with it
		}
		return nil, fmt.Errorf("herald/nats: read tracking records: %w", err)
	}
	defer func() { _ = w.Stop() }()
	byHandler := map[string]transport.Delivery{}
	for {
		var e jetstream.KeyValueEntry
		select {
		case e = <-w.Updates():
		case <-ctx.Done():
			return nil, fmt.Errorf("herald/nats: read tracking records: %w", ctx.Err())
		}
		if e == nil {
			break // every value held so far was delivered
		}
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		var d transport.Delivery
		if err := json.Unmarshal(e.Value(), &d); err != nil || d.EventID != eventID {
			continue // not Herald's, or another ID with the same hash token
		}
		if old, ok := byHandler[d.Handler]; ok {
			d = old.Merge(d)
		}
		byHandler[d.Handler] = d
	}
	out := make([]transport.Delivery, 0, len(byHandler))
	for _, d := range byHandler {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b transport.Delivery) int { return strings.Compare(a.Handler, b.Handler) })
	return out, nil
}
