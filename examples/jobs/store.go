package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// errNotFound: no blob has this name.
var errNotFound = errors.New("not found")

// blobStore keeps the bytes the jobs share between the HTTP side and the
// handlers: uploaded images (the events carry only their name: a claim check,
// so that an event stays small), thumbnails and import records. Its methods
// are safe for concurrent use.
//
// On memory it is a map (one process holds everything anyway). Over NATS it is
// a JetStream key-value bucket, so that every replica of the service sees the same
// blobs: the replica that accepted an upload is often not the one that makes
// its thumbnail, nor the one asked for the status.
type blobStore interface {
	Put(ctx context.Context, name string, data []byte) error
	// Get returns the blob, or an error wrapping errNotFound.
	Get(ctx context.Context, name string) ([]byte, error)
	// Delete removes the blob; deleting a missing one is not an error.
	Delete(ctx context.Context, name string) error
}

// memStore is a blobStore in process memory.
type memStore struct {
	mu    sync.Mutex
	blobs map[string][]byte
}

func newMemStore() *memStore { return &memStore{blobs: make(map[string][]byte)} }

func (s *memStore) Put(_ context.Context, name string, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.blobs[name] = bytes.Clone(data)
	return nil
}

func (s *memStore) Get(_ context.Context, name string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.blobs[name]
	if !ok {
		return nil, fmt.Errorf("%s: %w", name, errNotFound)
	}
	return bytes.Clone(b), nil
}

func (s *memStore) Delete(_ context.Context, name string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.blobs, name)
	return nil
}

// kvStore is a blobStore in a JetStream key-value bucket, so that every
// replica of the service sees the same blobs.
//
// Not a JetStream object store, the natural home of files: nats.go v1.55's
// object store Put publishes asynchronously through a publisher whose
// reconnect watcher can be stranded on a nil channel when Put returns quickly
// (see adapters/nats/pubacks.go), a goroutine lost per small Put. Key-value
// puts are synchronous. A blob larger than a message may be is cut into
// chunks of kvChunk bytes: the keys name.<version>.<i>, then the key name
// holds the version and the count of chunks (written last, so that Get sees
// a blob whole or not at all).
type kvStore struct{ kv jetstream.KeyValue }

// kvChunk is the largest value kvStore writes: well under a NATS server's
// default max_payload (1 MiB).
const kvChunk = 256 << 10

// kvBlob is the value of a blob's own key.
type kvBlob struct {
	Version string `json:"version"`
	Chunks  int    `json:"chunks"`
	Size    int    `json:"size"`
}

// newKVStore creates the bucket if it does not exist; its blobs expire after
// ttl (0: never).
func newKVStore(ctx context.Context, js jetstream.JetStream, bucket string, ttl time.Duration) (*kvStore, error) {
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "herald examples/jobs: uploads, thumbnails, import records, contacts",
		TTL:         ttl,
	})
	if err != nil {
		return nil, fmt.Errorf("key-value bucket %s: %w", bucket, err)
	}
	return &kvStore{kv: kv}, nil
}

// kvKey maps a blob name (any string) to a valid key.
func kvKey(name string) string { return "b." + base64.RawURLEncoding.EncodeToString([]byte(name)) }

func chunkKey(key, version string, i int) string { return key + "." + version + "." + strconv.Itoa(i) }

func (s *kvStore) head(ctx context.Context, key string) (kvBlob, error) {
	e, err := s.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return kvBlob{}, errNotFound
	}
	if err != nil {
		return kvBlob{}, err
	}
	var b kvBlob
	if err := json.Unmarshal(e.Value(), &b); err != nil {
		return kvBlob{}, fmt.Errorf("blob %s: %w", key, err)
	}
	return b, nil
}

func (s *kvStore) Put(ctx context.Context, name string, data []byte) error {
	key := kvKey(name)
	blob := kvBlob{Version: strings.ToLower(rand.Text()), Size: len(data)}
	for off := 0; off == 0 || off < len(data); off += kvChunk {
		if _, err := s.kv.Put(ctx, chunkKey(key, blob.Version, blob.Chunks), data[off:min(off+kvChunk, len(data))]); err != nil {
			return err
		}
		blob.Chunks++
	}
	old, err := s.head(ctx, key)
	if err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	head, err := json.Marshal(blob)
	if err != nil {
		return err
	}
	if _, err := s.kv.Put(ctx, key, head); err != nil {
		return err
	}
	return s.deleteChunks(ctx, key, old)
}

func (s *kvStore) Get(ctx context.Context, name string) ([]byte, error) {
	key := kvKey(name)
	blob, err := s.head(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	data := make([]byte, 0, blob.Size)
	for i := range blob.Chunks {
		e, err := s.kv.Get(ctx, chunkKey(key, blob.Version, i))
		if err != nil {
			// Replaced or deleted while read.
			return nil, fmt.Errorf("%s: chunk %d: %w", name, i, err)
		}
		data = append(data, e.Value()...)
	}
	if len(data) != blob.Size {
		return nil, fmt.Errorf("%s: %d bytes, want %d", name, len(data), blob.Size)
	}
	return data, nil
}

func (s *kvStore) Delete(ctx context.Context, name string) error {
	key := kvKey(name)
	blob, err := s.head(ctx, key)
	if errors.Is(err, errNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	if err := s.kv.Purge(ctx, key); err != nil {
		return err
	}
	return s.deleteChunks(ctx, key, blob)
}

// deleteChunks purges the chunks of a version no key refers to any more.
func (s *kvStore) deleteChunks(ctx context.Context, key string, b kvBlob) error {
	for i := range b.Chunks {
		if err := s.kv.Purge(ctx, chunkKey(key, b.Version, i)); err != nil {
			return err
		}
	}
	return nil
}
