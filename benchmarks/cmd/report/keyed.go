package main

import "fmt"

// writeKeyed writes the section on ordering by key across replicas
// (BenchmarkNATSKeyed), when the run has it.
func writeKeyed(p printer, res *results) {
	if len(res.values("NATSKeyed", "partitions")) == 0 {
		return
	}
	p("## NATS JetStream: ordering by key across replicas\n\n")
	p("`BenchmarkNATSKeyed`: b.N events published with `bus.PublishAsync` from one goroutine over 256 ordering keys, to\n")
	p("one handler with `WithOrderingByKey` and `WithConcurrency(8)` on 1 and 3 replicas (a bus, a transport and a\n")
	p("connection each), with `nats.Config.Partitions` 1, 8 and 32: each partition is a consumer shared by the replicas\n")
	p("with one event in flight. \"unkeyed\": the same events without a key, to the same handler without ordering by key.\n")
	p("The clock stops when every event was handled once. \"consumers\" is the handler's consumers on the server (its\n")
	p("topic's, its replays', and one per partition, or one for all partitions when it does not order by key).\n\n")
	p("| server | replicas | partitions | consumers | %s | ÷ unkeyed |\n", perfHead)
	p("|---|---:|---|---:|%s|---:|\n", perfAlign)
	for _, srv := range res.values("NATSKeyed", "server") {
		for _, r := range res.values("NATSKeyed", "replicas", "server", srv) {
			base := res.find("NATSKeyed", "server", srv, "replicas", r, "partitions", "unkeyed")
			for _, parts := range res.values("NATSKeyed", "partitions", "server", srv, "replicas", r) {
				s := res.find("NATSKeyed", "server", srv, "replicas", r, "partitions", parts)
				if s == nil {
					continue
				}
				ratio := ""
				if parts != "unkeyed" && base != nil {
					ratio = fmtRatioP(ratioOf(s.stat("events/s"), base.stat("events/s")))
				}
				p("| %s | %s | %s | %s | %s | %s |\n", srv, r, parts, plain(s.stat("consumers"), func(v float64) string { return fmt.Sprintf("%.0f", v) }), perfCells(s), ratio)
			}
		}
	}
	p("\nA partition hands out its next event only once the previous one is acknowledged, to whichever replica asks:\n")
	p("its throughput is one event per round trip (server → handler → ack → server), and partitions run in parallel\n")
	p("up to the workers of all replicas. More partitions, more consumers on the server (see `nats.Config.Partitions`).\n\n")
}
