package nats

import (
	"strings"
	"testing"
)

func TestTokenNames(t *testing.T) {
	seen := map[string]string{}
	for _, name := range []string{"billing.charge-card", "billing_charge-card", "a.b", "a_b", "a b", "ünïcode.h",
		strings.Repeat("x", 300), strings.Repeat("x", 299) + "y"} {
		tok := token(name, 40)
		if err := validToken(tok); err != nil {
			t.Errorf("token(%q) = %q: %v", name, tok, err)
		}
		if strings.ContainsAny(tok, ".*> /\\\t") || len(tok) > 53 {
			t.Errorf("token(%q) = %q is not a valid consumer name", name, tok)
		}
		if other, dup := seen[tok]; dup {
			t.Errorf("token(%q) = token(%q) = %q", name, other, tok)
		}
		seen[tok] = name
	}
	if a, b := consumerName("h", "_replay.h"), consumerName("h", "orders.v1.placed"); a == b {
		t.Errorf("one consumer name for two topics: %s", a)
	}
	if got := token("billing.charge-card", 40); !strings.HasPrefix(got, "billing_charge-card_") {
		t.Errorf("token keeps the name readable: %q", got)
	}
}

func TestAtLeast(t *testing.T) {
	for v, want := range map[string]bool{"2.9.10": true, "2.10.0": true, "2.8.4": false, "3.0.0": true, "1.9.0": false,
		"2.11.0-beta.1": true, "v2.9.0": true, "weird": true} {
		if got := atLeast(v, 2, 9); got != want {
			t.Errorf("atLeast(%q) = %v", v, got)
		}
	}
}

func TestRedact(t *testing.T) {
	if got := redact("nats://u:secret@h:4222,nats://h2:4222"); strings.Contains(got, "secret") {
		t.Errorf("redact = %q", got)
	}
}

// validSubject's ASCII fast path and its rune loop agree: every subject is
// accepted or refused as a rune-by-rune check would.
func TestValidSubject(t *testing.T) {
	for _, tc := range []struct {
		s  string
		ok bool
	}{
		{"orders.placed", true}, {"a", true}, {"a-b_c.d1", true}, {"ünïcode.h", true}, {"a~b|c", true},
		{"", false}, {".a", false}, {"a.", false}, {"a..b", false}, {"a.*", false}, {"a.>", false}, {"a*b", false},
		{"a b", false}, {"a\tb", false}, {"a\nb", false}, {"a\x00b", false}, {"a\x7fb", false},
		{"a\u00a0b", false}, {"a\u0085b", false}, {"a\u2003b", false}, {"ü..x", false}, {"ü.", false},
	} {
		if err := validSubject(tc.s); (err == nil) != tc.ok {
			t.Errorf("validSubject(%q) = %v, want ok %v", tc.s, err, tc.ok)
		}
	}
}

// validHeader refuses a value with a line break, and keys that cannot be
// header names.
func TestValidHeader(t *testing.T) {
	for _, tc := range []struct {
		k, v string
		ok   bool
	}{
		{"Herald-Event", "orders.placed", true}, {"X", "", true}, {"X", "a\u00e9b", true},
		{"", "v", false}, {"A B", "v", false}, {"A:B", "v", false}, {"A\x7f", "v", false},
		{"X", "a\nb", false}, {"X", "a\rb", false}, {"X", "\r\n", false},
	} {
		if err := validHeader(tc.k, tc.v); (err == nil) != tc.ok {
			t.Errorf("validHeader(%q, %q) = %v, want ok %v", tc.k, tc.v, err, tc.ok)
		}
	}
}
