package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// An email job reaches the SMTP server: the received message, parsed as a
// mail reader would, has the recipient, subject (non-ASCII, encoded) and
// body (long lines, non-ASCII: quoted-printable) asked for, and the job ID
// as its Message-ID.
func TestEmailDelivered(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		body := "Hello Zoë,\nyour report is ready: " + strings.Repeat("=long line ", 20) + "\n-- \nHerald"
		id := e.postEmail("Zoë <zoe@example.com>", "Grüße: your report", body)
		e.waitMail("the email", func(msgs []receivedMail, _ int) bool { return len(msgs) == 1 })
		m := e.app.mail.Messages()[0]
		if m.From != mailFrom || len(m.To) != 1 || m.To[0] != "zoe@example.com" {
			t.Errorf("envelope from %q to %q", m.From, m.To)
		}
		p, err := parseMail(m.Data)
		if err != nil {
			t.Fatal(err)
		}
		// SMTP ends the message with a line break.
		if p.Subject != "Grüße: your report" || strings.TrimSuffix(p.Body, "\n") != body || p.MessageID != "<"+id+"@"+mailDomain+">" ||
			!strings.Contains(p.To, "zoe@example.com") {
			t.Errorf("received %+v\n%s", p, m.Data)
		}
	})
}

// What the email handler cannot send is refused at once, with the reason.
func TestEmailBadRequests(t *testing.T) {
	e := start(t, testConfig())
	for _, c := range []struct{ body, want string }{
		{`{"to": "not an address", "subject": "s", "body": "b"}`, "to: mail: "},
		{`{"to": "a@example.com", "subject": "", "body": "b"}`, "subject: empty"},
		{`{"to": "a@example.com", "subject": "s\r\nBcc: all@example.com", "body": "b"}`, "subject: a line break"},
		{`{"to": "a@example.com", "subject": "s", "body": "b", "cc": "x@example.com"}`, `unknown field "cc"`},
		{`{"to": "a@example.com", "subject": "s", "body": "` + strings.Repeat("x", maxEmailBody+1) + `"}`, "body: longer than"},
		{`[1, 2]`, "want a JSON object"},
	} {
		e.expectError(http.MethodPost, "/emails", "application/json", []byte(c.body), http.StatusBadRequest, c.want)
	}
	e.expectError(http.MethodPost, "/emails", "application/json", []byte(strings.Repeat(" ", maxEmailBody+9<<10)), http.StatusRequestEntityTooLarge, "body larger than")
	if n := e.app.mail.Attempts(); n != 0 {
		t.Errorf("%d messages offered to the SMTP server", n)
	}
}

// A server failing twice with 451 is retried by the bus's retry policy: the
// third attempt delivers the email, once, and the status says done at
// attempt 3, with the last failure's error.
func TestEmailRetriedThenDelivered(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		e.app.mail.Fail(2, 451)
		id := e.postEmail("bob@example.com", "retried", "third time lucky")
		e.waitMail("the email", func(msgs []receivedMail, _ int) bool { return len(msgs) == 1 })
		if n := e.app.mail.Attempts(); n != 3 {
			t.Errorf("%d attempts, want 3", n)
		}
		if st := e.waitState(id, "done"); st.Attempt != 3 || !strings.Contains(st.Error, "SMTP error 451") {
			t.Errorf("status %+v", st)
		}
	})
}

// A job's status goes queued → running → done, each state observed while
// the SMTP server holds the message in DATA: the handler (concurrency 1)
// sends the first email while the second waits its turn.
func TestEmailStatusQueuedRunningDone(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		hold := e.app.mail.Hold()
		first := e.postEmail("a@example.com", "first", "1")
		e.waitMail("the first email in DATA", func(_ []receivedMail, attempts int) bool { return attempts == 1 })
		second := e.postEmail("b@example.com", "second", "2")
		// The replica that accepted the job knows it at once: no wait.
		if st := e.status(second); st.State != "queued" || st.Attempt != 0 || !st.Started.IsZero() || st.Queued.IsZero() {
			t.Errorf("queued: %+v", st)
		}
		if st := e.status(first); st.State != "running" || st.Attempt != 1 || st.Started.IsZero() || !st.Finished.IsZero() {
			t.Errorf("first, held in DATA: %+v", st)
		}
		send(t, hold)
		e.waitMail("the second email in DATA", func(msgs []receivedMail, attempts int) bool { return len(msgs) == 1 && attempts == 2 })
		if st := e.waitState(first, "done"); st.Attempt != 1 || st.Error != "" || st.Finished.IsZero() || st.Kind != "email" {
			t.Errorf("first, sent: %+v", st)
		}
		if st := e.waitState(second, "running"); st.Attempt != 1 {
			t.Errorf("second, held in DATA: %+v", st)
		}
		send(t, hold)
		e.waitState(second, "done")
		e.app.mail.Unhold()
	})
}

// A server that keeps failing: the email is retried by the bus's policy
// (3 attempts in the tests) and then poisoned; its status says so, with
// the server's last answer, and so does its poison record.
func TestEmailPoisoned(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		e.app.mail.Fail(-1, 451)
		id := e.postEmail("c@example.com", "never", "sent")
		st := e.waitState(id, "poisoned")
		if st.Attempt != cfg.EmailRetry.MaxAttempts || !strings.Contains(st.Error, "451") || st.Finished.IsZero() {
			t.Errorf("status %+v", st)
		}
		rec := e.waitPoisoned(emailHandler, id)
		if rec.Attempts != cfg.EmailRetry.MaxAttempts || !strings.Contains(rec.Error, "SMTP error 451") {
			t.Errorf("poison record: %d attempts, error %q", rec.Attempts, rec.Error)
		}
		if n := e.app.mail.Attempts(); n != cfg.EmailRetry.MaxAttempts || len(e.app.mail.Messages()) != 0 {
			t.Errorf("%d attempts, %d messages received", n, len(e.app.mail.Messages()))
		}
	})
}

// Unknown jobs are 404, whatever their ID looks like.
func TestUnknownJob(t *testing.T) {
	e := start(t, testConfig())
	for _, id := range []string{"email-nosuchjob", "image-nosuchjob", "import-nosuchjob", "nosuchkind-x", "email-"} {
		e.expectError(http.MethodGet, "/jobs/"+id, "", nil, http.StatusNotFound, "no job \""+id+"\"")
	}
}

// A server that refuses the message (5xx): retrying cannot help, the email
// is poisoned at its first attempt.
func TestEmailRefusedPoisonedAtOnce(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		e := start(t, cfg)
		e.app.mail.Fail(1, 550)
		id := e.postEmail("d@example.com", "refused", "no such user")
		st := e.waitState(id, "poisoned")
		if st.Attempt != 1 || !strings.Contains(st.Error, "SMTP error 550") {
			t.Errorf("status %+v", st)
		}
		if n := e.app.mail.Attempts(); n != 1 {
			t.Errorf("%d attempts", n)
		}
	})
}

// The demo's controls of the SMTP server: a bad count or code is refused.
func TestMailboxControls(t *testing.T) {
	e := start(t, testConfig())
	e.expectError(http.MethodPost, "/mailbox/fail?next=x", "", nil, http.StatusBadRequest, "next: want a number")
	e.expectError(http.MethodPost, "/mailbox/fail?next=1&code=250", "", nil, http.StatusBadRequest, "code: want an SMTP failure code")
	if code, _, _ := e.do(http.MethodPost, "/mailbox/fail?next=1&code=554", "", nil); code != http.StatusNoContent {
		t.Fatalf("POST /mailbox/fail: %d", code)
	}
	id := e.postEmail("d@example.com", "refused", "by the control")
	if st := e.waitState(id, "poisoned"); !strings.Contains(st.Error, "SMTP error 554") {
		t.Errorf("status %+v", st)
	}
	e.postEmail("d@example.com", "sent", "after")
	e.waitMail("the second email", func(msgs []receivedMail, _ int) bool { return len(msgs) == 1 })
	code, _, data := e.do(http.MethodGet, "/mailbox", "", nil)
	var views []mailView
	if err := json.Unmarshal(data, &views); err != nil || code != http.StatusOK || len(views) != 1 || views[0].Subject != "sent" || views[0].Body != "after\n" {
		t.Errorf("GET /mailbox: %d %s", code, data)
	}
}
