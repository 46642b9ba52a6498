package main

// onOff is a section comparing a memory and a NATS benchmark run with a
// feature off and on: its rows are the transports, servers and modes, with
// the ratio of ns/event on to off.
type onOff struct {
	mem, nats string // the benchmarks' names, without "Benchmark"
	key       string // the sub-benchmark key of the mode ("providers", "tracking")
	off, on   string // its two values
}

// write renders the table; false if the run has neither benchmark.
func (o onOff) write(p printer, res *results) bool {
	mem := len(res.values(o.mem, o.key)) > 0
	nats := len(res.values(o.nats, o.key)) > 0
	if !mem && !nats {
		return false
	}
	p("| transport | server | %s | %s | %s ÷ %s |\n", o.key, perfHead, o.on, o.off)
	p("|---|---|---|%s---:|\n", perfAlign+"|")
	row := func(transport, srv string, s, off *series, mode string) {
		if s == nil {
			return
		}
		r := ""
		if mode == o.on && off != nil {
			r = fmtRatioP(ratioOf(s.stat("ns/op"), off.stat("ns/op")))
		}
		p("| %s | %s | %s | %s | %s |\n", transport, srv, mode, perfCells(s), r)
	}
	if mem {
		off := res.find(o.mem, o.key, o.off)
		for _, mode := range []string{o.off, o.on} {
			row("memory", "–", res.find(o.mem, o.key, mode), off, mode)
		}
	}
	for _, srv := range res.values(o.nats, "server") {
		off := res.find(o.nats, "server", srv, o.key, o.off)
		for _, mode := range []string{o.off, o.on} {
			row("NATS", srv, res.find(o.nats, "server", srv, o.key, mode), off, mode)
		}
	}
	return true
}

// trackCost is the section on the cost of delivery tracking.
var trackCost = onOff{mem: "TrackMemory", nats: "TrackNATS", key: "tracking", off: "off", on: "on"}

// writeTrack renders the cost of delivery tracking: BenchmarkTrackMemory and
// BenchmarkTrackNATS, each with tracking off and on.
func writeTrack(p printer, res *results) {
	if len(res.values(trackCost.mem, trackCost.key))+len(res.values(trackCost.nats, trackCost.key)) == 0 {
		return
	}
	p("## The cost of delivery tracking\n\n")
	p("`BenchmarkTrackMemory` (memory transport) and `BenchmarkTrackNATS` (NATS, as `BenchmarkNATSEndToEnd`'s Herald\n")
	p("run): b.N events published in batches to one handler (default chain), with `bus.WithTracking(time.Hour)` off\n")
	p("and on. On, each event costs a queued record at publish and a running and a done record from its handler: map\n")
	p("updates in process memory (kept for the hour: the heap grows with them), KV puts over NATS, made by the bus's\n")
	p("writers off the handler's path, one put for the states of a delivery that come within 10ms of each other.\n")
	p("The clock stops once the bus is closed, after the writes still queued: their cost is in the numbers.\n")
	p("\"on ÷ off\" is the ratio of ns/event.\n\n")
	trackCost.write(p, res)
	p("\n")
}
