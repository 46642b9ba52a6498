package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-smtp"

	"github.com/heraldbus/herald/bus"
)

// EmailRequested asks for one email to be sent. Its event ID is the job's ID.
type EmailRequested struct {
	To      string `json:"to"`
	Subject string `json:"subject"`
	Body    string `json:"body"`
}

// Limits of an email request.
const (
	maxSubject   = 200
	maxEmailBody = 64 << 10
	mailFrom     = "jobs@herald.example"
	mailDomain   = "herald.example"
)

// validate checks what the HTTP side accepts, so that the handler only meets
// the failures of delivery.
func (e EmailRequested) validate() error {
	if _, err := mail.ParseAddress(e.To); err != nil {
		return fmt.Errorf("to: %w", err)
	}
	switch {
	case strings.TrimSpace(e.Subject) == "":
		return errors.New("subject: empty")
	case len(e.Subject) > maxSubject:
		return fmt.Errorf("subject: longer than %d bytes", maxSubject)
	case strings.ContainsAny(e.Subject, "\r\n"):
		return errors.New("subject: a line break") // header injection
	case len(e.Body) > maxEmailBody:
		return fmt.Errorf("body: longer than %d bytes", maxEmailBody)
	}
	return nil
}

// compose returns the RFC 5322 message of e: its Message-ID is made of the job
// ID, so that a receiver can drop the duplicate an at-least-once redelivery
// may send (the bus delivers at least once: a crash between the server's 250
// and the handler's acknowledgement sends the email again).
func compose(id string, e EmailRequested, now time.Time) ([]byte, error) {
	to, err := mail.ParseAddress(e.To)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: Herald jobs <%s>\r\n", mailFrom)
	fmt.Fprintf(&b, "To: %s\r\n", to.String())
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", e.Subject))
	fmt.Fprintf(&b, "Date: %s\r\n", now.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@%s>\r\n", id, mailDomain)
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n")
	w := quotedprintable.NewWriter(&b)
	if _, err := io.WriteString(w, strings.ReplaceAll(e.Body, "\n", "\r\n")); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// sendMail delivers msg to e.To through the SMTP server at addr, honouring
// ctx (the handler's: cancelled at shutdown or by an attempt timeout). A 5xx
// reply is a permanent failure (the bus poisons the job at once); a 4xx reply
// or a network error is retried by the bus's retry policy.
func sendMail(ctx context.Context, addr, to string, msg []byte) (err error) {
	rcpt, err := mail.ParseAddress(to)
	if err != nil {
		return bus.Permanent(err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("smtp dial: %w", err)
	}
	// A ctx that ends interrupts the conversation wherever it is.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	c := smtp.NewClient(conn)
	defer func() { _ = c.Close() }()
	defer func() {
		if ctx.Err() != nil && err != nil {
			err = fmt.Errorf("%w (%w)", ctx.Err(), err)
		}
	}()
	if err := c.SendMail(mailFrom, []string{rcpt.Address}, bytes.NewReader(msg)); err != nil {
		var se *smtp.SMTPError
		if errors.As(err, &se) && se.Code >= 500 {
			return bus.Permanent(fmt.Errorf("smtp: %w", err))
		}
		return fmt.Errorf("smtp: %w", err)
	}
	return c.Quit()
}

// receivedMail is one message the mailbox accepted.
type receivedMail struct {
	From string
	To   []string
	Data []byte
}

// mailbox is the SMTP server the example starts in process, on 127.0.0.1: a
// stand-in for the mail relay a real service would talk to. It keeps what it
// receives in memory and can be told to fail (451, a temporary failure) for
// the next n messages or until told otherwise (or refuse them: 5xx). Its methods are safe for
// concurrent use.
type mailbox struct {
	srv    *smtp.Server
	ln     net.Listener
	addr   string
	served chan struct{} // closed when Serve has returned
	closed chan struct{} // closed by Close: releases held DATA commands

	mu         sync.Mutex
	msgs       []receivedMail
	attempts   int           // DATA commands received, accepted or not
	failNext   int           // how many DATA commands still fail
	failAlways bool          // every DATA fails
	failCode   int           // with this reply code
	hold       chan struct{} // when not nil, each DATA takes a token before it answers
	changed    chan struct{} // closed and replaced at each DATA
}

// startMailbox starts an SMTP server on a free port of 127.0.0.1.
func startMailbox() (*mailbox, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m := &mailbox{ln: ln, addr: ln.Addr().String(), served: make(chan struct{}), closed: make(chan struct{}), changed: make(chan struct{})}
	m.srv = smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return &session{m: m}, nil }))
	m.srv.Domain = "localhost"
	m.srv.MaxMessageBytes = 1 << 20
	m.srv.MaxRecipients = 10
	m.srv.ReadTimeout = 30 * time.Second
	m.srv.WriteTimeout = 30 * time.Second
	m.srv.ErrorLog = log.New(io.Discard, "", 0)
	go func() {
		defer close(m.served)
		_ = m.srv.Serve(ln)
	}()
	return m, nil
}

// Addr returns the server's host:port.
func (m *mailbox) Addr() string { return m.addr }

// Close stops the server and closes its connections.
func (m *mailbox) Close() {
	select {
	case <-m.closed:
		return
	default:
	}
	close(m.closed)
	_ = m.srv.Close()
	// go-smtp's Close closes the listeners Serve has registered: when Serve
	// has not run yet, none, and it would then accept forever. Closing ours
	// makes its Accept fail, and Serve returns (the server is closed).
	_ = m.ln.Close()
	<-m.served
}

// Fail makes the next n messages fail with the reply code (n < 0: every
// message, until Fail(0, 0)): 4xx is a temporary failure, which the sender
// retries, 5xx a permanent one. A code outside 400-599 means 451.
func (m *mailbox) Fail(n, code int) {
	if code < 400 || code > 599 {
		code = 451
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failAlways, m.failNext, m.failCode = n < 0, max(n, 0), code
}

// Messages returns the messages received so far, oldest first.
func (m *mailbox) Messages() []receivedMail {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]receivedMail(nil), m.msgs...)
}

// Attempts returns how many messages were offered (DATA commands), accepted
// or not.
func (m *mailbox) Attempts() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.attempts
}

// Hold makes every DATA command wait, after it is counted, for a token from
// the returned channel (or for Close) before it answers: a test's way to keep
// a send in flight. Unhold ends it (the caller must not close the channel).
func (m *mailbox) Hold() chan<- struct{} {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.hold = make(chan struct{})
	return m.hold
}

// Unhold releases every waiting DATA command and stops holding new ones.
func (m *mailbox) Unhold() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.hold != nil {
		close(m.hold)
		m.hold = nil
	}
}

// Wait waits until cond, called with the mailbox locked after each DATA,
// holds, or ctx ends.
func (m *mailbox) Wait(ctx context.Context, cond func(msgs []receivedMail, attempts int) bool) error {
	for {
		m.mu.Lock()
		ok, changed := cond(m.msgs, m.attempts), m.changed
		m.mu.Unlock()
		if ok {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// session is one SMTP conversation.
type session struct {
	m    *mailbox
	from string
	to   []string
}

func (s *session) Reset()        { s.from, s.to = "", nil }
func (s *session) Logout() error { return nil }

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	s.from = from
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.to = append(s.to, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := s.m
	m.mu.Lock()
	m.attempts++
	hold := m.hold
	m.signal()
	m.mu.Unlock()
	if hold != nil {
		select {
		case <-hold:
		case <-m.closed:
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "shutting down"}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	defer m.signal()
	if m.failAlways || m.failNext > 0 {
		m.failNext = max(m.failNext-1, 0)
		if m.failCode >= 500 {
			return &smtp.SMTPError{Code: m.failCode, EnhancedCode: smtp.EnhancedCode{5, 3, 0}, Message: "mailbox told to refuse"}
		}
		return &smtp.SMTPError{Code: m.failCode, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "mailbox told to fail, try again later"}
	}
	m.msgs = append(m.msgs, receivedMail{From: s.from, To: append([]string(nil), s.to...), Data: data})
	return nil
}

// signal wakes the waiters; m.mu is held.
func (m *mailbox) signal() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// parsedMail is a received message, decoded.
type parsedMail struct {
	From, To, Subject, MessageID string
	Body                         string
}

// parseMail decodes a message as a mail reader would: its headers (the
// subject's encoded words) and its body (quoted-printable, CRLF line ends).
func parseMail(data []byte) (parsedMail, error) {
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		return parsedMail{}, err
	}
	var dec mime.WordDecoder
	subject, err := dec.DecodeHeader(msg.Header.Get("Subject"))
	if err != nil {
		return parsedMail{}, fmt.Errorf("subject: %w", err)
	}
	body := msg.Body
	if strings.EqualFold(msg.Header.Get("Content-Transfer-Encoding"), "quoted-printable") {
		body = quotedprintable.NewReader(body)
	}
	text, err := io.ReadAll(body)
	if err != nil {
		return parsedMail{}, fmt.Errorf("body: %w", err)
	}
	return parsedMail{
		From:      msg.Header.Get("From"),
		To:        msg.Header.Get("To"),
		Subject:   subject,
		MessageID: msg.Header.Get("Message-ID"),
		Body:      strings.ReplaceAll(string(text), "\r\n", "\n"),
	}, nil
}
