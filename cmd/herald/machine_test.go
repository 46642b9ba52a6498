package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats"
)

// TestMachineNATS runs the command against the machine's NATS ($NATS_URL, set
// by .ci/run when a server listens on 127.0.0.1:4222), on a stream and
// subject prefix of its own, deleted afterwards.
func TestMachineNATS(t *testing.T) {
	url := os.Getenv("NATS_URL")
	if url == "" {
		const msg = "NATS_URL not set: the machine's NATS is not tested (.ci/run sets it when a server listens on 127.0.0.1:4222)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	stream, prefix := "HERALDCLI_"+strings.ToUpper(id), "heraldcli_"+id
	t.Cleanup(func() {
		nc, err := natsgo.Connect(url)
		if err != nil {
			t.Error(err)
			return
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range []string{stream, stream + "_POISON"} {
			_ = js.DeleteStream(ctx, s)
		}
	})
	w := newWorldOn(t, url, nats.Config{StreamName: stream, SubjectPrefix: prefix})
	cli := func(args ...string) result {
		t.Helper()
		return herald(t, url, append([]string{"--stream", stream, "--prefix", prefix}, args...)...)
	}
	if h := decode[[]handlerRow](t, cli("handlers", "--json")); len(h) != 1 || h[0].Name != "welcome" || h[0].Backlog != 1 {
		t.Fatalf("handlers: %+v", h)
	}
	if recs := decode[[]recordJSON](t, cli("poison", "list", "--json")); len(recs) != 2 || recs[0].ID != w.records[0] {
		t.Fatalf("poison list: %+v", recs)
	}
	if r := cli("poison", "show", w.records[0]); r.code != 0 || !strings.Contains(r.stdout, "ada@example.com") {
		t.Fatalf("poison show: %d %s", r.code, r.stderr)
	}
	if r := cli("poison", "replay", w.records[0]); r.code != 0 {
		t.Fatalf("poison replay: %d %s", r.code, r.stderr)
	}
	if r := cli("poison", "purge", "--all", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "purged 1 records") {
		t.Fatalf("poison purge: %d %s%s", r.code, r.stdout, r.stderr)
	}
	if h := decode[[]handlerRow](t, cli("handlers", "--json")); h[0].Backlog != 2 {
		t.Fatalf("backlog after the replay: %d, want 2", h[0].Backlog)
	}
}
