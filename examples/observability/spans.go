package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/heraldbus/herald/middleware"
)

// spanLog is a span exporter that keeps the ended spans, to print a trace as
// a tree. A real service exports them (OTLP to a collector, Jaeger, ...).
type spanLog struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (l *spanLog) ExportSpans(_ context.Context, spans []sdktrace.ReadOnlySpan) error {
	l.mu.Lock()
	l.spans = append(l.spans, spans...)
	l.mu.Unlock()
	return nil
}

func (l *spanLog) Shutdown(context.Context) error { return nil }

// tree renders, as an indented tree (children oldest first, with the
// messaging attributes and the attempt events), the trace in which billing
// retried: o-2's.
func (l *spanLog) tree() string {
	l.mu.Lock()
	spans := slices.Clone(l.spans)
	l.mu.Unlock()
	var traceID trace.TraceID
	for _, s := range spans {
		if s.Name() == "process main.OrderPlaced" && attr(s, middleware.AttrConsumerGroup) == "billing.charge" &&
			attr(s, middleware.AttrAttempts) == "2" {
			traceID = s.SpanContext().TraceID()
		}
	}
	children := map[trace.SpanID][]sdktrace.ReadOnlySpan{}
	var root sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.SpanContext().TraceID() != traceID {
			continue
		}
		if !s.Parent().IsValid() {
			root = s
			continue
		}
		children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
	}
	if root == nil {
		return "  (no trace)\n"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "  trace %s\n", traceID)
	var walk func(s sdktrace.ReadOnlySpan, depth int)
	walk = func(s sdktrace.ReadOnlySpan, depth int) {
		ind := strings.Repeat("  ", depth+1)
		fmt.Fprintf(&b, "%s%s [%s] %s", ind, s.Name(), s.SpanKind(), s.EndTime().Sub(s.StartTime()).Round(1000))
		for _, k := range []attribute.Key{middleware.AttrConsumerGroup, middleware.AttrOutcome, middleware.AttrAttempts} {
			if v := attr(s, k); v != "" {
				fmt.Fprintf(&b, " %s=%s", k, v)
			}
		}
		b.WriteString("\n")
		for _, e := range s.Events() {
			fmt.Fprintf(&b, "%s  · %s", ind, e.Name)
			for _, a := range e.Attributes {
				if a.Key != "exception.message" {
					fmt.Fprintf(&b, " %s=%s", a.Key, a.Value.String())
				}
			}
			b.WriteString("\n")
		}
		kids := children[s.SpanContext().SpanID()]
		slices.SortFunc(kids, func(x, y sdktrace.ReadOnlySpan) int { return x.StartTime().Compare(y.StartTime()) })
		for _, k := range kids {
			walk(k, depth+1)
		}
	}
	walk(root, 0)
	return b.String()
}

func attr(s sdktrace.ReadOnlySpan, k attribute.Key) string {
	for _, a := range s.Attributes() {
		if a.Key == k {
			return a.Value.String()
		}
	}
	return ""
}
