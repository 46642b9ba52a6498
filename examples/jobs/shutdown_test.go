package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bustest"
)

// served is a service started by serve, as main starts it.
type served struct {
	t      *testing.T
	app    *app
	url    string
	out    *bustest.Buffer
	cancel context.CancelFunc // SIGINT
	done   chan error         // serve's error, once it returned

	returned bool
	err      error
}

// wait waits for serve to return, and returns its error.
func (s *served) wait() error {
	if !s.returned {
		select {
		case s.err = <-s.done:
			s.returned = true
		case <-time.After(testTimeout):
			s.t.Fatal("serve did not return")
		}
	}
	return s.err
}

// serveTest starts serve with args and an address of its own.
func serveTest(t *testing.T, args ...string) *served {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	s := &served{t: t, out: &bustest.Buffer{}, cancel: cancel, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		s.done <- serve(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), s.out, func(a *app, addr string) {
			s.app, s.url = a, "http://"+addr
			close(ready)
		})
	}()
	select {
	case <-ready:
	case err := <-s.done:
		t.Fatalf("serve: %v\n%s", err, s.out)
	}
	t.Cleanup(func() {
		cancel()
		_ = s.wait()
	})
	return s
}

// postEmails posts n emails and returns their job IDs.
func (s *served) postEmails(n int) []string {
	s.t.Helper()
	var ids []string
	for i := range n {
		body, _ := json.Marshal(EmailRequested{To: "x@example.com", Subject: "job " + string(rune('a'+i)), Body: "b"})
		resp, err := http.Post(s.url+"/emails", "application/json", bytes.NewReader(body))
		if err != nil {
			s.t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			s.t.Fatalf("POST /emails: %d", resp.StatusCode)
		}
		ids = append(ids, strings.TrimPrefix(resp.Header.Get("Location"), "/jobs/"))
	}
	return ids
}

// shutdown cancels serve's ctx (SIGINT) and waits until it stops taking
// requests.
func (s *served) shutdown() {
	s.t.Helper()
	s.cancel()
	bustest.Eventually(s.t, testTimeout, func() bool { return strings.Contains(s.out.String(), "finishing the accepted jobs") },
		"serve to stop taking requests:\n%s", s.out)
	if resp, err := http.Post(s.url+"/emails", "application/json", strings.NewReader("{}")); err == nil {
		resp.Body.Close()
		s.t.Errorf("a request after shutdown: %d", resp.StatusCode)
	}
}

// interruptWithJobs posts n emails, holds the first in the SMTP server's
// DATA (the others wait their turn), then shuts down; it returns their job
// IDs.
func (s *served) interruptWithJobs(n int) []string {
	s.t.Helper()
	s.app.mail.Hold()
	ids := s.postEmails(n)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.app.mail.Wait(ctx, func(_ []receivedMail, attempts int) bool { return attempts == 1 }); err != nil {
		s.t.Fatal(err)
	}
	s.shutdown()
	return ids
}

// sentIDs returns the job IDs of the emails a mailbox received.
func sentIDs(t *testing.T, m *mailbox) []string {
	var ids []string
	for _, r := range m.Messages() {
		p, err := parseMail(r.Data)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, strings.TrimSuffix(strings.TrimPrefix(p.MessageID, "<"), "@"+mailDomain+">"))
	}
	slices.Sort(ids)
	return ids
}

// On memory, SIGINT loses no accepted job: with one email in flight and four
// queued when it comes, serve stops taking requests, then sends all five
// before it returns.
func TestShutdownMemoryHandlesAcceptedJobs(t *testing.T) {
	s := serveTest(t)
	ids := s.interruptWithJobs(5)
	s.app.mail.Unhold()
	if err := s.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.out)
	}
	slices.Sort(ids)
	if got := sentIDs(t, s.app.mail); !slices.Equal(got, ids) {
		t.Errorf("sent %q, want %q", got, ids)
	}
	if !strings.Contains(s.out.String(), "stopped; every accepted job was handled") {
		t.Errorf("output:\n%s", s.out)
	}
}

// Over NATS, jobs not handled at SIGINT stay in the stream: the email held
// in flight past the shutdown timeout is interrupted (nacked, not poisoned),
// the four queued are left, and the next replica sends all five.
func TestShutdownNATSLeavesJobsInTheStream(t *testing.T) {
	srv := natstest.New(t)
	s := serveTest(t, "-nats", srv.URL(), "-shutdown-timeout", "500ms")
	ids := s.interruptWithJobs(5)
	if err := s.wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, s.out)
	}
	if n := len(s.app.mail.Messages()); n != 0 || !strings.Contains(s.out.String(), "stopped; the jobs not handled yet wait in the stream") {
		t.Errorf("%d emails sent before the shutdown; output:\n%s", n, s.out)
	}

	cfg := testConfig()
	cfg.NATSURL = srv.URL()
	next := start(t, cfg)
	next.waitMail("the five emails", func(msgs []receivedMail, _ int) bool { return len(msgs) >= 5 })
	slices.Sort(ids)
	if got := sentIDs(t, next.app.mail); !slices.Equal(got, ids) {
		t.Errorf("sent %q, want %q", got, ids)
	}
	for _, id := range ids {
		if st := next.waitState(id, "done"); st.Attempt < 1 {
			t.Errorf("%s: %+v", id, st)
		}
	}
}

// Bad flags and unreachable servers make run fail at once, with the reason.
func TestRunBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-email-attempts", "0"}, "must be positive"},
		{[]string{"-status-ttl", "-1s"}, "must be positive"},
		{[]string{"extra"}, `unexpected arguments ["extra"]`},
		{[]string{"-nosuchflag"}, "flag provided but not defined"},
		{[]string{"-addr", "127.0.0.1:0", "-nats", "nats://127.0.0.1:1"}, "nats: "},
		{[]string{"-addr", "256.0.0.1:0"}, "listen tcp"},
	} {
		var out bustest.Buffer
		err := run(context.Background(), c.args, &out)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("run %q: %v, want an error containing %q", c.args, err, c.want)
		}
	}
}
