package main

import (
	"strings"
	"testing"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
)

// TestMachineNATS runs the command against the machine's NATS ($NATS_URL, set
// by .ci/run when a server listens on 127.0.0.1:4222), on a stream and
// subject prefix of its own, deleted afterwards.
func TestMachineNATS(t *testing.T) {
	m := natstest.NewMachine(t, "heraldcli")
	url, stream, prefix := m.URL, m.StreamName, m.SubjectPrefix
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
