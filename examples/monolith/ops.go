package main

import (
	"context"
	"net"
	"net/http"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/ops"
)

// serveOps serves the operator page of b (package ops) under /ops/ on ln,
// until stop is called. A real service mounts it behind its authentication:
// the page has none of its own.
func serveOps(b *bus.Bus, ln net.Listener) (stop func(), err error) {
	page, err := ops.Handler(b)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", page))
	mux.Handle("/{$}", http.RedirectHandler("/ops/", http.StatusFound))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when Shutdown is called
	}()
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
