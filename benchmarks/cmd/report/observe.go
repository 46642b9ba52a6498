package main

// writeObserve renders the cost of observability: BenchmarkObserveMemory and
// BenchmarkObserveNATS, each without providers and with both.
func writeObserve(p printer, res *results) {
	if len(res.values("ObserveMemory", "providers"))+len(res.values("ObserveNATS", "providers")) == 0 {
		return
	}
	p("## The cost of observability\n\n")
	p("`BenchmarkObserveMemory` (b.N events published one after the other to one handler, memory transport, default\n")
	p("chain) and `BenchmarkObserveNATS` (`BenchmarkNATSEndToEnd`'s Herald run with one handler), each with no provider\n")
	p("(the default) and with both `bus.WithTracing` and `bus.WithMetrics`: the OpenTelemetry SDK's providers, every\n")
	p("span sampled into a batch span processor whose exporter discards, and a meter provider with a manual reader\n")
	p("(every instrument aggregates, nothing is collected during the run). The cost measured is Herald's and the SDK's,\n")
	p("not an exporter's I/O. \"both ÷ none\" is the ratio of ns/event.\n\n")
	onOff{mem: "ObserveMemory", nats: "ObserveNATS", key: "providers", off: "none", on: "both"}.write(p, res)
	p("\nWith no provider the bus makes no span or metric call: `providers=none` is the hot path of the other tables, and\n")
	p("a test in package bus checks that an event costs the allocations it did before observability existed.\n\n")
}
