// Package natstest runs an embedded NATS server with JetStream for tests and
// examples: no installed nats-server needed.
//
//	srv := natstest.New(t)                 // closed when the test ends
//	tr, err := nats.New(nats.Config{URL: srv.URL()})
package natstest

import (
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// readyTimeout bounds how long Start and Restart wait for the server to
// accept connections.
const readyTimeout = 10 * time.Second

// Server is an embedded nats-server with JetStream on, listening on
// 127.0.0.1 at a free port, storing in a temporary directory of its own, and
// logging nothing. Its methods are safe for concurrent use.
type Server struct {
	mu   sync.Mutex
	srv  *server.Server
	dir  string
	port int
	done bool
}

// Start starts a server. Close it when done.
func Start() (*Server, error) {
	dir, err := os.MkdirTemp("", "natstest-")
	if err != nil {
		return nil, fmt.Errorf("natstest: %w", err)
	}
	s := &Server{dir: dir, port: -1}
	if err := s.start(); err != nil {
		_ = os.RemoveAll(dir)
		return nil, err
	}
	return s, nil
}

// New starts a server and closes it when t ends; it fails t if the server
// cannot start.
func New(t testing.TB) *Server {
	t.Helper()
	s, err := Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

func (s *Server) start() error {
	opts := &server.Options{
		ServerName: "natstest",
		Host:       "127.0.0.1",
		Port:       s.port,
		JetStream:  true,
		StoreDir:   s.dir,
		NoLog:      true,
		NoSigs:     true,
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natstest: %w", err)
	}
	srv.Start()
	if !srv.ReadyForConnections(readyTimeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return errors.New("natstest: server not ready for connections")
	}
	s.srv = srv
	s.port = srv.Addr().(*net.TCPAddr).Port
	return nil
}

// URL returns the server's client URL, e.g. "nats://127.0.0.1:4321". It stays
// the same across Restart.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("nats://127.0.0.1:%d", s.port)
}

// Server returns the running nats-server, for tests that need more control
// (nil after Close, or while Restart is between servers).
func (s *Server) Server() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Shutdown stops the server and keeps its store; Restart starts it again.
// Clients see the connection drop and reconnect when it is back.
func (s *Server) Shutdown() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown()
}

func (s *Server) shutdown() {
	if s.srv != nil {
		s.srv.Shutdown()
		s.srv.WaitForShutdown()
		s.srv = nil
	}
}

// Restart stops the server (if running) and starts it again on the same port
// and store directory: streams, consumers and stored events survive, and
// clients reconnect.
func (s *Server) Restart() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return errors.New("natstest: restart of a closed server")
	}
	s.shutdown()
	var err error
	// The port may take a moment to be free again.
	for deadline := time.Now().Add(readyTimeout); ; {
		if err = s.start(); err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close shuts the server down and removes its store directory. It is safe to
// call more than once.
func (s *Server) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return
	}
	s.done = true
	s.shutdown()
	_ = os.RemoveAll(s.dir)
}
