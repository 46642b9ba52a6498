// Package testenv is what Herald's test helpers do when a machine service
// a test needs (a broker, a database, a browser) is missing: under CI the
// test fails, since CI must run every test; elsewhere it is skipped, with a
// message that says what to set or install.
package testenv

import (
	"os"
	"testing"
)

// Missing ends t for want of a service, with msg: t.Fatal when the CI
// environment variable is "true", t.Skip otherwise.
func Missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Getenv returns the environment variable name, or ends t with [Missing]
// when it is unset or empty; msg says what needs it and how to set it.
func Getenv(t testing.TB, name, msg string) string {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		Missing(t, msg)
	}
	return v
}
