package main

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
