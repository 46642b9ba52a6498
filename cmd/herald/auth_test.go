package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// authServer starts an embedded nats-server with JetStream that requires
// user and password, and returns its URL (without credentials).
func authServer(t *testing.T, user, password string) string {
	t.Helper()
	srv, err := server.NewServer(&server.Options{
		Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		Username: user, Password: password, NoSigs: true, NoLog: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	go srv.Start()
	t.Cleanup(func() { srv.Shutdown(); srv.WaitForShutdown() })
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return fmt.Sprintf("nats://%s", srv.Addr().String())
}

func TestUserPassword(t *testing.T) {
	url := authServer(t, "operator", "s3cret")
	for _, tc := range []struct {
		name   string
		args   []string
		env    string
		code   int
		stderr string
	}{
		{"flags", []string{"--user", "operator", "--password", "s3cret"}, "", exitOK, ""},
		{"password from the environment", []string{"--user", "operator"}, "s3cret", exitOK, ""},
		{"wrong password", []string{"--user", "operator", "--password", "nope"}, "", exitFailed, "Authorization"},
		{"no credentials", nil, "", exitFailed, url},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("NATS_PASSWORD", tc.env)
			r := herald(t, url, append(tc.args, "handlers", "--json")...)
			if r.code != tc.code || !strings.Contains(strings.ToLower(r.stderr), strings.ToLower(tc.stderr)) {
				t.Fatalf("exit %d, want %d; stderr %q, want it to hold %q", r.code, tc.code, r.stderr, tc.stderr)
			}
		})
	}
}
