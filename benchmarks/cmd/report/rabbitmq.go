package main

// rabbitImpls are the RabbitMQ implementations, Herald first.
var rabbitImpls = []string{"herald", "watermill-amqp", "amqp091"}

// writeRabbitMQ writes the RabbitMQ sections, when the run has them (the
// benchmarks need RABBITMQ_URL).
func writeRabbitMQ(p printer, res *results) {
	if len(res.values("RabbitMQEndToEnd", "impl")) > 0 {
		p("## RabbitMQ: end to end\n\n")
		p("`BenchmarkRabbitMQEndToEnd`: b.N events published in batches of 1000 (each batch waits for its publisher\n")
		p("confirms) to 1 and 5 handlers, each a durable quorum queue getting every event, decoding it (JSON) and acking it;\n")
		p("the clock stops when every handler has handled every event, and the benchmark then checks, off the clock, that\n")
		p("the queues are empty. Same topology everywhere (Herald's): a durable topic exchange, a durable quorum queue per\n")
		p("handler bound with the event name, persistent messages, publisher confirms, manual acks, prefetch 32. Herald:\n")
		p("`rabbitmq.New` with a prefix of its own, `bus.PublishBatch` (pipelined confirms), one `Subscribe` per handler.\n")
		p("raw watermill-amqp/v3: its topic config with a durable exchange and quorum queues, `ConfirmDelivery` and a pool\n")
		p("of 8 publisher channels (`Publish(topic, msgs...)` awaits each confirm in turn), a Subscriber per handler read\n")
		p("directly, no router. raw amqp091-go: one connection, one confirm channel with\n")
		p("`PublishWithDeferredConfirmWithContext` for the whole batch then every confirm, a consuming channel per handler.\n\n")
		implTable(p, res, "RabbitMQEndToEnd", "", "handlers", rabbitImpls)
	}
	if len(res.values("RabbitMQPublish", "impl")) > 0 {
		p("## RabbitMQ: concurrent publishers\n\n")
		p("`BenchmarkRabbitMQPublish`: b.N events from 8 goroutines, each `Publish` waiting for its own confirm, to 1\n")
		p("and 5 bound quorum queues that nobody consumes (Herald `bus.Publish`, watermill-amqp `Publish`, amqp091-go\n")
		p("deferred confirm on one shared channel).\n\n")
		implTable(p, res, "RabbitMQPublish", "", "queues", rabbitImpls)
	}
}
