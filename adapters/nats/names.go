package nats

import (
	"fmt"
	"strings"
	"unicode"

	"github.com/heraldbus/herald/internal/adapterkit"
)

// Subjects and names. An event topic T is published on "<SubjectPrefix>.T"; a
// handler H consumes it through the durable consumer consumerName(H, T). Poison
// records of H are kept on "<SubjectPrefix>_poison.<token(H)>.<record ID>".

// validSubject reports whether s is a NATS subject without wildcards: dot
// separated tokens, none empty, with no whitespace, control characters, '*'
// or '>'.
func validSubject(s string) error {
	if s == "" {
		return fmt.Errorf("empty subject")
	}
	// Every publish checks its subject: ASCII, the usual case, byte by
	// byte; anything else by rune, below.
	ascii := true
	prevByte := byte('.')
	for i := 0; i < len(s) && ascii; i++ {
		c := s[i]
		switch {
		case c >= 0x80:
			ascii = false
		case c == '.' && prevByte == '.', c == '*', c == '>', c <= ' ', c == 0x7f:
			ascii = false // let the rune loop say what is wrong
		}
		prevByte = c
	}
	if ascii && prevByte != '.' {
		return nil
	}
	prev := '.'
	for _, r := range s {
		switch {
		case r == '.' && prev == '.':
			return fmt.Errorf("%q has an empty token", s)
		case r == '*' || r == '>':
			return fmt.Errorf("%q contains the wildcard %q", s, r)
		case unicode.IsSpace(r) || unicode.IsControl(r):
			return fmt.Errorf("%q contains whitespace or a control character", s)
		}
		prev = r
	}
	if prev == '.' {
		return fmt.Errorf("%q has an empty token", s)
	}
	return nil
}

// validToken reports whether s is a single subject token (no '.').
func validToken(s string) error {
	if strings.Contains(s, ".") {
		return fmt.Errorf("%q contains '.'", s)
	}
	return validSubject(s)
}

// validStreamName reports whether s can name a JetStream stream.
func validStreamName(s string) error {
	if s == "" {
		return fmt.Errorf("empty stream name")
	}
	if len(s) > 64 {
		return fmt.Errorf("stream name %q is longer than 64 bytes", s)
	}
	if strings.ContainsAny(s, ".*>/\\") {
		return fmt.Errorf("stream name %q contains one of . * > / \\", s)
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return fmt.Errorf("stream name %q contains whitespace or a control character", s)
		}
	}
	return nil
}

// token maps a name that may hold dots, dashes or any other character to one
// subject token that is also a valid consumer name: its characters outside
// [A-Za-z0-9_-] become '_', it is cut to max bytes, and a hash of the whole
// name follows, so that distinct names ("a.b" and "a_b") stay distinct.
func token(name string, max int) string {
	return adapterkit.Squeeze(name, max, func(c byte) bool {
		return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
	}, '_')
}

// consumerName is the durable consumer of handler on topic: one per (handler,
// topic) pair, because nats-server 2.9 allows one filter subject per consumer.
func consumerName(handler, topic string) string {
	return token(handler, 40) + "__" + token(topic, 40)
}
