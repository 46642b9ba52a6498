package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// Signup is the event of the tests.
type Signup struct {
	Email string `json:"email"`
}

func (Signup) EventName() string { return "users.Signup" }

// result is one run of the command.
type result struct {
	code           int
	stdout, stderr string
}

// herald runs the command against url with args; stdin is never a terminal.
func herald(t *testing.T, url string, args ...string) result {
	t.Helper()
	var out, errb bustest.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, append([]string{"--url", url}, args...), strings.NewReader(""), &out, &errb)
	return result{code, out.String(), errb.String()}
}

// background is a herald command running in a goroutine.
type background struct {
	out, errb bustest.Buffer
	done      chan int // its exit code
}

// runBackground runs herald with args in a goroutine, until ctx ends.
func runBackground(ctx context.Context, args ...string) *background {
	bg := &background{done: make(chan int, 1)}
	go func() { bg.done <- run(ctx, args, strings.NewReader(""), &bg.out, &bg.errb) }()
	return bg
}

// waitUntil waits up to 10s for cond; if it never holds, it fails t with
// what and the command's output (the buffers are read when it fails).
func (bg *background) waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	bustest.Eventually(t, 10*time.Second, cond, "%s: stdout %q, stderr %q", what, &bg.out, &bg.errb)
}

// exited waits for up to 10s for the command to exit, and fails t unless it
// exits 0 (with what, if it does not exit).
func (bg *background) exited(t *testing.T, what string) {
	t.Helper()
	select {
	case code := <-bg.done:
		if code != 0 {
			t.Fatalf("exit %d: %s", code, bg.errb.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal(what)
	}
}

// world is a server with the handler "welcome", which poisons every Signup,
// two poison records of it, and one more event in its backlog, published
// after its bus closed (its consumer stays, durable).
type world struct {
	url     string
	records []string // poison record IDs, oldest first
}

func newWorld(t *testing.T) world {
	t.Helper()
	return newWorldOn(t, natstest.New(t).URL(), nats.Config{})
}

// newWorldOn makes the world on the server at url, with the stream and
// prefix of cfg.
func newWorldOn(t *testing.T, url string, cfg nats.Config) world {
	t.Helper()
	ctx := context.Background()
	cfg.URL = url
	b := newBusCfg(t, cfg)
	if _, err := bus.Subscribe(b, "welcome", func(_ context.Context, e Signup) error {
		return bus.Permanent(errors.New("smtp refused <script>alert(1)</script> for " + e.Email))
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.Start(ctx); err != nil {
		t.Fatal(err)
	}
	for _, e := range []string{"ada@example.com", "bob@example.com"} {
		if err := bus.Publish(ctx, b, Signup{Email: e}); err != nil {
			t.Fatal(err)
		}
	}
	recs := waitRecords(t, b, 2)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	pub := newBusCfg(t, cfg)
	if err := pub.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bus.Publish(ctx, pub, Signup{Email: "cy@example.com"}); err != nil {
		t.Fatal(err)
	}
	if err := pub.Close(ctx); err != nil {
		t.Fatal(err)
	}
	return world{url: url, records: recs}
}

func newBus(t *testing.T, url string) *bus.Bus {
	t.Helper()
	return newBusCfg(t, nats.Config{URL: url})
}

func newBusCfg(t *testing.T, cfg nats.Config) *bus.Bus {
	t.Helper()
	tr, err := nats.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := bus.New(bus.WithTransport(tr))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close(context.Background()) })
	return b
}

// waitRecords waits until the bus's poison queue holds n records and returns
// their IDs.
func waitRecords(t *testing.T, b *bus.Bus, n int) []string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		recs, err := b.Poison().List(context.Background(), "")
		if err == nil && len(recs) == n {
			ids := make([]string, n)
			for i, r := range recs {
				ids[i] = r.ID
			}
			return ids
		}
		if time.Now().After(deadline) {
			t.Fatalf("poison queue: want %d records, have %d (err %v)", n, len(recs), err)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, with a deadline
	}
}

func decode[T any](t *testing.T, r result) T {
	t.Helper()
	var v T
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), &v); err != nil {
		t.Fatalf("output is not the JSON expected: %v\n%s", err, r.stdout)
	}
	return v
}

func handlerByName(t *testing.T, url, name string) handlerRow {
	t.Helper()
	for _, h := range decode[[]handlerRow](t, herald(t, url, "handlers", "--json")) {
		if h.Name == name {
			return h
		}
	}
	t.Fatalf("no handler %q in herald handlers", name)
	return handlerRow{}
}

func publishSignup(b *bus.Bus, email string, opts ...bus.PublishOption) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return bus.Publish(ctx, b, Signup{Email: email}, opts...)
}
