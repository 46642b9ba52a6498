package main

import (
	"context"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/ops"
)

var opsIndex = template.Must(template.New("index").Parse(`<!doctype html><title>Herald services</title>
<h1>Services</h1><ul>{{range .}}<li><a href="{{.}}/">{{.}}</a></li>{{end}}</ul>`))

// serveOps serves the operator page (package ops) of each service's bus under
// /ops/<service>/ on addr, and an index of them at /ops/, until stop is
// called. Each page shows the handlers of its bus; the poison records are the
// transport's, shared by all. A real service mounts its page behind its
// authentication: the page has none of its own.
func serveOps(addr string, buses map[string]*bus.Bus, names []string) (url string, stop func(), err error) {
	mux := http.NewServeMux()
	for _, name := range names {
		page, err := ops.Handler(buses[name], ops.WithTitle(name))
		if err != nil {
			return "", nil, err
		}
		mux.Handle("/ops/"+name+"/", http.StripPrefix("/ops/"+name, page))
	}
	mux.HandleFunc("GET /ops/{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_ = opsIndex.Execute(w, names)
	})
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("-ops: %w", err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns when Shutdown is called
	}()
	return "http://" + ln.Addr().String() + "/ops/", func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
		<-done
	}, nil
}
