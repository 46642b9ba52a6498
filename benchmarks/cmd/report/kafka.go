package main

// writeKafka is the Kafka section: Herald beside raw franz-go on kfake.
func writeKafka(p printer, res *results) {
	const base = "KafkaEndToEnd"
	if len(res.values(base, "impl")) == 0 {
		return
	}
	p("## Kafka: end to end\n\n")
	p("`BenchmarkKafkaEndToEnd`: b.N events published in batches of 1000 (each batch waits for the broker's acks) to 1\n")
	p("and 5 handlers, each a consumer group getting every event and decoding it (JSON); the clock stops when every\n")
	p("handler has handled every event. Herald: `kafka.New` with default settings (one partition, prefixes of its own),\n")
	p("`bus.PublishBatch`, one `Subscribe` per handler; it commits each event's offset after its handler returned. raw\n")
	p("franz-go: one producer (`ProduceSync`, acks=all, idempotent, no linger), a client per handler in a group of its\n")
	p("own polling and autocommitting, JSON by hand, none of Herald's retries, poison records or metadata.\n\n")
	p("**kfake is not a performance reference.** `cluster=kfake` is franz-go's in-process fake cluster (records in\n")
	p("memory, no replication, no disk, no network beyond loopback): it compares the two clients in one run on one\n")
	p("machine, and says nothing of what either achieves against a real Kafka cluster (`cluster=machine`, when\n")
	p("`KAFKA_BROKERS` was set).\n\n")
	p("| cluster | handlers | implementation | events/s | ns/event | B/event | allocs/event | ÷ franz-go |\n")
	p("|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, cl := range res.values(base, "cluster") {
		for _, v := range res.values(base, "handlers", "cluster", cl) {
			h := res.find(base, "cluster", cl, "impl", "herald", "handlers", v).stat("events/s")
			for _, impl := range []string{"herald", "franz-go"} {
				s := res.find(base, "cluster", cl, "impl", impl, "handlers", v)
				if s == nil {
					continue
				}
				fg := ""
				if impl == "herald" {
					fg = fmtRatioP(ratioOf(h, res.find(base, "cluster", cl, "impl", "franz-go", "handlers", v).stat("events/s")))
				}
				p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", cl, v, label(impl), cell(s.stat("events/s"), fmtRate),
					cell(s.stat("ns/op"), fmtNs), cell(s.stat("B/op"), fmtNum), cell(s.stat("allocs/op"), fmtNum), fg)
			}
		}
	}
	p("\n")
}
