package main

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
)

func TestHandlers(t *testing.T) {
	w := newWorld(t)
	r := herald(t, w.url, "handlers")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 2 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "HANDLER") {
		t.Fatalf("want a header and one handler:\n%s", r.stdout)
	}
	if f := strings.Fields(lines[1]); len(f) < 5 || f[0] != "welcome" || f[1] != "users.Signup" || f[2] != "1" {
		t.Fatalf("want welcome, users.Signup, backlog 1; got %q", lines[1])
	}
	h := handlerByName(t, w.url, "welcome")
	if h.Backlog != 1 || len(h.Consumers) != 3 || h.LastActive == nil {
		t.Fatalf("welcome: %+v; want backlog 1, 3 consumers (event, its keyed partitions, replay), a last activity", h)
	}
}

func TestHandlersWatchStopsWithContext(t *testing.T) {
	w := newWorld(t)
	ctx, cancel := context.WithCancel(context.Background())
	bg := runBackground(ctx, "--url", w.url, "handlers", "--watch", "--interval", "10ms")
	bg.waitUntil(t, func() bool { return strings.Count(bg.out.String(), "welcome") >= 2 }, "--watch did not refresh") // refreshed at least once
	cancel()
	bg.exited(t, "--watch did not stop when its context ended")
}

func TestPoisonListAndShow(t *testing.T) {
	w := newWorld(t)
	recs := decode[[]recordJSON](t, herald(t, w.url, "poison", "list", "--json"))
	if len(recs) != 2 || recs[0].ID != w.records[0] || recs[0].Handler != "welcome" || recs[0].Event != "users.Signup" || recs[0].Attempts != 1 {
		t.Fatalf("poison list --json: %+v", recs)
	}
	for _, tc := range []struct {
		name string
		args []string
		want int
	}{
		{"by handler", []string{"--handler", "welcome"}, 2},
		{"other handler", []string{"--handler", "billing"}, 0},
		{"by event", []string{"--event", "users.Signup"}, 2},
		{"other event", []string{"--event", "orders.Placed"}, 0},
		{"limit", []string{"--limit", "1"}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := decode[[]recordJSON](t, herald(t, w.url, append([]string{"poison", "list", "--json"}, tc.args...)...))
			if len(got) != tc.want {
				t.Fatalf("want %d records, got %d", tc.want, len(got))
			}
		})
	}
	table := herald(t, w.url, "poison", "list")
	if table.code != 0 || !strings.Contains(table.stdout, w.records[1]) || !strings.Contains(table.stdout, "smtp refused") {
		t.Fatalf("poison list: exit %d\n%s%s", table.code, table.stdout, table.stderr)
	}

	show := herald(t, w.url, "poison", "show", w.records[0])
	for _, want := range []string{"Handler:", "welcome", "Attempts:", "smtp refused <script>", "\"email\": \"ada@example.com\"", "Herald-Event: users.Signup"} {
		if !strings.Contains(show.stdout, want) {
			t.Errorf("poison show lacks %q:\n%s", want, show.stdout)
		}
	}
	if raw := herald(t, w.url, "poison", "show", "--raw", w.records[0]); raw.stdout != `{"email":"ada@example.com"}` {
		t.Errorf("poison show --raw: %q", raw.stdout)
	}
	full := decode[recordJSON](t, herald(t, w.url, "poison", "show", "--json", w.records[1]))
	var compact bytes.Buffer
	_ = json.Compact(&compact, full.Payload)
	if compact.String() != `{"email":"bob@example.com"}` || full.Metadata["Herald-Event"] != "users.Signup" {
		t.Errorf("poison show --json: %+v", full)
	}
}

func TestPoisonReplay(t *testing.T) {
	w := newWorld(t)
	r := herald(t, w.url, "poison", "replay", w.records[0])
	if r.code != 0 || !strings.Contains(r.stdout, "replayed "+w.records[0]) {
		t.Fatalf("replay: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	left := decode[[]recordJSON](t, herald(t, w.url, "poison", "list", "--json"))
	if len(left) != 1 || left[0].ID != w.records[1] {
		t.Fatalf("after replay, want only %s left: %+v", w.records[1], left)
	}
	// Nothing consumes welcome now: the replay waits in its replay consumer.
	if h := handlerByName(t, w.url, "welcome"); h.Backlog != 2 {
		t.Fatalf("welcome's backlog after a replay: %d, want 2", h.Backlog)
	}
	r = herald(t, w.url, "poison", "replay", "--handler", "welcome")
	if r.code != 0 || !strings.Contains(r.stdout, "replayed 1 records") {
		t.Fatalf("replay --handler: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if h := handlerByName(t, w.url, "welcome"); h.Backlog != 3 {
		t.Fatalf("welcome's backlog after replaying all: %d, want 3", h.Backlog)
	}
}

func TestPoisonPurge(t *testing.T) {
	w := newWorld(t)
	// stdin is not a terminal: without --yes nothing is purged.
	r := herald(t, w.url, "poison", "purge", w.records[0])
	if r.code != exitRefused || !strings.Contains(r.stderr, "--yes") {
		t.Fatalf("purge without --yes: exit %d: %s", r.code, r.stderr)
	}
	if n := len(decode[[]recordJSON](t, herald(t, w.url, "poison", "list", "--json"))); n != 2 {
		t.Fatalf("a refused purge deleted records: %d left", n)
	}
	if r := herald(t, w.url, "poison", "purge", "--yes", w.records[0]); r.code != 0 {
		t.Fatalf("purge --yes: exit %d: %s", r.code, r.stderr)
	}
	if r := herald(t, w.url, "poison", "purge", "--all"); r.code != exitRefused {
		t.Fatalf("purge --all without --yes: exit %d", r.code)
	}
	if r := herald(t, w.url, "poison", "purge", "--all", "--yes"); r.code != 0 || !strings.Contains(r.stdout, "purged 1 records") {
		t.Fatalf("purge --all --yes: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if n := len(decode[[]recordJSON](t, herald(t, w.url, "poison", "list", "--json"))); n != 0 {
		t.Fatalf("%d records left after purge --all", n)
	}
}

func TestTail(t *testing.T) {
	w := newWorld(t)
	bg := runBackground(context.Background(), "--url", w.url, "tail", "--json", "--count", "2", "users.Signup")
	bg.waitUntil(t, func() bool { return strings.Contains(bg.errb.String(), "tailing herald.users.Signup") }, "tail did not start")
	b := newBus(t, w.url)
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The ID travels only as Nats-Msg-Id (Herald leaves out a Herald-Id that
	// repeats it): tail prints it all the same.
	if err := publishSignup(b, "dee@example.com", bus.WithMessageID("signup-dee")); err != nil {
		t.Fatal(err)
	}
	// A keyed event, on a partition subject: tailed too (the embedded server
	// takes two filter subjects).
	if err := publishSignup(b, "eve@example.com", bus.WithOrderingKey("eve"), bus.WithMessageID("signup-eve")); err != nil {
		t.Fatal(err)
	}
	bg.exited(t, "tail did not print the event")
	lines := strings.Split(strings.TrimSpace(bg.out.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("tail printed %d lines: %q", len(lines), bg.out.String())
	}
	for i, who := range []string{"dee", "eve"} {
		line := decode[tailLine](t, result{stdout: lines[i]})
		if line.Event != "users.Signup" || line.ID != "signup-"+who || string(line.Payload) != `{"email":"`+who+`@example.com"}` {
			t.Fatalf("tail printed %+v", line)
		}
	}
}

func TestHandlersDelete(t *testing.T) {
	w := newWorld(t)
	if r := herald(t, w.url, "handlers", "delete", "welcome"); r.code != exitRefused {
		t.Fatalf("delete without --yes: exit %d", r.code)
	}
	if r := herald(t, w.url, "handlers", "delete", "--yes", "welcome"); r.code != 0 || !strings.Contains(r.stdout, "3 consumers") {
		t.Fatalf("delete --yes: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}
	if hs := decode[[]handlerRow](t, herald(t, w.url, "handlers", "--json")); len(hs) != 0 {
		t.Fatalf("handlers left after delete: %+v", hs)
	}
	// Its poison records stay, and cannot be replayed: nothing would consume them.
	if r := herald(t, w.url, "poison", "replay", w.records[0]); r.code != exitFailed || !strings.Contains(r.stderr, "no consumer") {
		t.Fatalf("replay to a deleted handler: exit %d: %s", r.code, r.stderr)
	}
}

func TestBadInput(t *testing.T) {
	w := newWorld(t)
	for _, tc := range []struct {
		name   string
		url    string
		args   []string
		code   int
		stderr string
	}{
		{"unknown record", w.url, []string{"poison", "show", "nope"}, exitNotFound, "nope"},
		{"replay unknown record", w.url, []string{"poison", "replay", "nope"}, exitNotFound, "nope"},
		{"purge unknown record", w.url, []string{"poison", "purge", "--yes", "nope"}, exitNotFound, "nope"},
		{"delete unknown handler", w.url, []string{"handlers", "delete", "--yes", "nope"}, exitNotFound, `no handler "nope"`},
		{"no server", "nats://127.0.0.1:1", []string{"handlers"}, exitFailed, "nats://127.0.0.1:1"},
		{"bad URL scheme", "http://127.0.0.1:4222", []string{"handlers"}, exitUsage, "bad NATS URL"},
		{"URL without host", "nats://", []string{"poison", "list"}, exitUsage, "no host"},
		{"unknown command", w.url, []string{"frobnicate"}, exitUsage, "unknown command"},
		{"unknown flag", w.url, []string{"poison", "list", "--bogus"}, exitUsage, "bogus"},
		{"show without ID", w.url, []string{"poison", "show"}, exitUsage, "takes 1 argument"},
		{"replay without selection", w.url, []string{"poison", "replay"}, exitUsage, "--handler"},
		{"replay ID and --all", w.url, []string{"poison", "replay", "--all", "x"}, exitUsage, "--handler"},
		{"raw and json", w.url, []string{"poison", "show", "--raw", "--json", "x"}, exitUsage, "exclude"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := herald(t, tc.url, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to hold %q", r.code, tc.code, r.stderr, tc.stderr)
			}
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); tc.code != exitUsage && n != 0 {
				t.Fatalf("the error is not one line: %q", r.stderr)
			}
		})
	}
}

// A server where no Herald service ran has no handlers and no records: empty
// lists, not errors.
func TestEmptyServer(t *testing.T) {
	url := natstest.New(t).URL()
	if hs := decode[[]handlerRow](t, herald(t, url, "handlers", "--json")); len(hs) != 0 {
		t.Fatalf("handlers: %+v", hs)
	}
	if r := herald(t, url, "handlers"); r.code != 0 || strings.TrimSpace(r.stdout) != "HANDLER  EVENT  BACKLOG  ACK PENDING  REDELIVERED  LAST ACTIVE" {
		t.Fatalf("handlers: exit %d: %q", r.code, r.stdout)
	}
	if recs := decode[[]recordJSON](t, herald(t, url, "poison", "list", "--json")); len(recs) != 0 {
		t.Fatalf("poison list: %+v", recs)
	}
}
