package ops_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats"
)

// TestMachineNATS runs the page against the machine's NATS ($NATS_URL, set by
// .ci/run when a server listens on 127.0.0.1:4222), on a stream and subject
// prefix of its own, deleted afterwards: list, open and replay a record.
func TestMachineNATS(t *testing.T) {
	addr := os.Getenv("NATS_URL")
	if addr == "" {
		const msg = "NATS_URL not set: the machine's NATS is not tested (.ci/run sets it when a server listens on 127.0.0.1:4222)"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	var r [6]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	stream, prefix := "HERALDOPS_"+strings.ToUpper(id), "heraldops_"+id
	t.Cleanup(func() {
		nc, err := natsgo.Connect(addr)
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
	s := newShopOn(t, 2, nats.Config{URL: addr, StreamName: stream, SubjectPrefix: prefix})
	srv := serve(t, s.b)
	base := srv.URL + "/ops"
	waitFor(t, "archive's backlog", func() bool { return s.stat(t, "archive").Backlog == 2 })
	if _, body := get(t, base+"/"); !strings.Contains(body, `data-k="backlog">2<`) {
		t.Fatal("the handlers page does not show archive's backlog")
	}
	if _, body := get(t, base+"/record?id="+s.records[0]); !strings.Contains(body, "a@example.com") {
		t.Fatal("the record page does not show the record")
	}
	s.broken.Store(false)
	tok := token(t, srv.URL, s.records[0])
	resp, err := noRedirect.PostForm(base+"/replay", url.Values{"id": {s.records[0]}, "token": {tok}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("replay: %d", resp.StatusCode)
	}
	waitFor(t, "welcome to handle the replay", func() bool { return s.stat(t, "welcome").Handled == 1 })
	s.waitRecords(t, 1)
}
