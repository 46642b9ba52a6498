package main

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats/natstest"
)

// Both blob stores keep what is put, whole (a blob of several chunks too),
// replace it, and forget it when deleted; a missing blob is errNotFound.
func TestBlobStores(t *testing.T) {
	srv := natstest.New(t)
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	kv, err := newKVStore(ctx, js, "TEST_BLOBS", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("0123456789abcdef"), (2*kvChunk+100)/16) // three chunks
	for name, s := range map[string]blobStore{"memory": newMemStore(), "kv": kv} {
		t.Run(name, func(t *testing.T) {
			for _, data := range [][]byte{big, []byte("small"), {}, big[:kvChunk]} {
				if err := s.Put(ctx, "contacts/zoë@example.com", data); err != nil {
					t.Fatal(err)
				}
				got, err := s.Get(ctx, "contacts/zoë@example.com")
				if err != nil || !bytes.Equal(got, data) {
					t.Fatalf("Get: %d bytes, %v; want %d bytes", len(got), err, len(data))
				}
			}
			if err := s.Delete(ctx, "contacts/zoë@example.com"); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{"contacts/zoë@example.com", "never put"} {
				if _, err := s.Get(ctx, name); !errors.Is(err, errNotFound) {
					t.Errorf("Get(%q): %v, want errNotFound", name, err)
				}
				if err := s.Delete(ctx, name); err != nil {
					t.Errorf("Delete(%q): %v", name, err)
				}
			}
		})
	}
	// Replaced and deleted blobs leave no chunk behind.
	keys, err := kv.kv.ListKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for k := range keys.Keys() {
		left = append(left, k)
	}
	if len(left) != 0 {
		t.Errorf("keys left: %q", left)
	}
}
