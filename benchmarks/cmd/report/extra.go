package main

// writePerEvent writes the NATS per-event and async publish sections (issue
// of the per-event path: one event per request from many goroutines, and an
// async publish beside pipelined raw nats.go), when the run has them.
func writePerEvent(p printer, res *results) {
	impls := []string{"herald", "watermill-nats", "jetstream"}
	if len(res.values("NATSPerEvent", "impl")) > 0 {
		p("## NATS JetStream: one event per request, end to end\n\n")
		p("`BenchmarkNATSPerEvent`: b.N events from 8 and 64 goroutines, each publish waiting for its own PubAck (the\n")
		p("way a service publishes one event per request), to 1 and 5 handlers that each get every event; the clock stops\n")
		p("when every handler has handled every event. Herald: `bus.Publish` at its defaults (limits retention, the\n")
		p("event ID as Nats-Msg-Id). watermill-nats/v2: its synchronous `Publish`, `AckAsync` subscribers, no message\n")
		p("ID. jetstream: raw nats.go `PublishMsg` (waits for the PubAck) with a Nats-Msg-Id, pull `Consume`. One stream\n")
		p("configuration for all three (Herald's defaults: file storage, limits retention with a week's MaxAge).\n\n")
		p("| server | publishers | handlers | implementation | %s | ÷ watermill-nats | ÷ jetstream |\n", perfHead)
		p("|---|---:|---:|---|%s|---:|---:|\n", perfAlign)
		for _, srv := range res.values("NATSPerEvent", "server") {
			for _, pub := range res.values("NATSPerEvent", "publishers", "server", srv) {
				for _, h := range res.values("NATSPerEvent", "handlers", "server", srv, "publishers", pub) {
					find := func(impl string) *series {
						return res.find("NATSPerEvent", "server", srv, "publishers", pub, "handlers", h, "impl", impl)
					}
					first := find("herald").stat("events/s")
					for _, impl := range impls {
						s := find(impl)
						if s == nil {
							continue
						}
						wm, js := "", ""
						if impl == "herald" {
							wm = fmtRatioP(ratioOf(first, find("watermill-nats").stat("events/s")))
							js = fmtRatioP(ratioOf(first, find("jetstream").stat("events/s")))
						}
						p("| %s | %s | %s | %s | %s | %s | %s |\n", srv, pub, h, label(impl), perfCells(s), wm, js)
					}
				}
			}
		}
		p("\n")
	}
	if len(res.values("NATSPublishAsync", "impl")) > 0 {
		p("## NATS JetStream: async publish, end to end\n\n")
		p("`BenchmarkNATSPublishAsync`: b.N events from one goroutine without waiting for each PubAck, to 1 and 5\n")
		p("handlers; the clock stops when every handler has handled every event. Herald: `bus.PublishAsync` (window\n")
		p("4096, the transport's own pipeline). jetstream: raw nats.go `PublishMsgAsync` with at most 4096 pending and a\n")
		p("Nats-Msg-Id, pull `Consume`. watermill-nats has no async publish. Target: Herald ≥ 0.5 of jetstream.\n\n")
		implTable(p, res, "NATSPublishAsync", "server", "handlers", []string{"herald", "jetstream"})
	}
}

// writeOutbox writes the outbox section, when the run has it (the benchmark
// needs POSTGRES_URL).
func writeOutbox(p printer, res *results) {
	if res.find("Outbox") == nil {
		return
	}
	p("## Transactional outbox (Postgres)\n\n")
	p("`BenchmarkOutbox`: four writers each storing one event per Postgres transaction (`outbox.Store` then commit)\n")
	p("while one forwarder relays them to the bus's transport, beside the same writers calling `bus.Publish`\n")
	p("directly. Throughput: b.N events until every one is handled. Latency: from the commit (or the Publish call) to\n")
	p("the handler, one event at a time. Postgres 15 on the same machine (`POSTGRES_URL`), embedded nats-server.\n\n")
	p("| transport | path | events/s | p50 commit → handler | p99 |\n")
	p("|---|---|---:|---:|---:|\n")
	for _, tr := range []string{"memory", "nats"} {
		for _, path := range []string{"direct", "outbox"} {
			thr := res.named("Outbox", tr, "throughput", path)
			lat := res.named("Outbox", tr, "latency", path)
			if thr == nil && lat == nil {
				continue
			}
			rate, p50, p99 := "", "", ""
			if thr != nil {
				rate = cell(thr.stat("events/s"), fmtRate)
			}
			if lat != nil {
				p50 = cell(lat.stat("p50-µs"), fmtMicros)
				p99 = cell(lat.stat("p99-µs"), fmtMicros)
			}
			p("| %s | %s | %s | %s | %s |\n", tr, path, rate, p50, p99)
		}
	}
	p("\nOne commit per event bounds the outbox's throughput; its latency is the forwarder's wake-up (LISTEN/NOTIFY)\n")
	p("plus a read, a publish and a delete.\n\n")
}

// fmtMicros formats a duration given in µs.
func fmtMicros(v float64) string { return fmtNs(v * 1000) }

// named returns base's series whose name has every part (parts without
// "=", such as "Outbox/memory/latency/direct"), or nil.
func (r *results) named(base string, parts ...string) *series {
next:
	for _, s := range r.series {
		if s.base != base {
			continue
		}
		for _, p := range parts {
			if _, ok := s.config[p]; !ok {
				continue next
			}
		}
		return s
	}
	return nil
}
