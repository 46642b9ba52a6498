package ops_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
)

// TestMachineNATS runs the page against the machine's NATS ($NATS_URL, set by
// .ci/run when a server listens on 127.0.0.1:4222), on a stream and subject
// prefix of its own, deleted afterwards: list, open and replay a record.
func TestMachineNATS(t *testing.T) {
	m := natstest.NewMachine(t, "heraldops")
	addr, stream, prefix := m.URL, m.StreamName, m.SubjectPrefix
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
