package main

import (
	_ "embed"
	"strings"
)

// sectionsText is the prose of the comparison sections: each "## " heading
// and the paragraphs before its table, in the order of the report.
//
//go:embed sections.md
var sectionsText string

// implSection is a section of the report comparing the implementations of
// one benchmark in one table: its heading and paragraphs come from
// sections.md, its table from [implTable].
type implSection struct {
	base   string   // the benchmark's name without "Benchmark"
	groups []string // the configuration keys that split the table, outer first
	key    string   // the configuration key of each row
	impls  []string // the implementations, Herald first
}

// The implementations of each broker, Herald first.
var (
	natsImpls   = []string{"herald", "watermill-nats", "jetstream"}
	rabbitImpls = []string{"herald", "watermill-amqp", "amqp091"}
	kafkaImpls  = []string{"herald", "franz-go"}
)

// natsSections are the NATS JetStream throughput sections.
var natsSections = []implSection{
	{"NATSEndToEnd", []string{"server"}, "handlers", natsImpls},
	{"NATSPublish", []string{"server"}, "publishers", natsImpls},
	{"NATSPublishBatch", []string{"server"}, "batch", natsImpls},
}

// brokerSections are the RabbitMQ and Kafka sections (the benchmarks need
// RABBITMQ_URL; Kafka's run on kfake and, with KAFKA_BROKERS, a real
// cluster), then NATS's per-event and async publish paths.
var brokerSections = []implSection{
	{"RabbitMQEndToEnd", nil, "handlers", rabbitImpls},
	{"RabbitMQPublish", nil, "queues", rabbitImpls},
	{"KafkaEndToEnd", []string{"cluster"}, "handlers", kafkaImpls},
	{"NATSPerEvent", []string{"server", "publishers"}, "handlers", natsImpls},
	{"NATSPublishAsync", []string{"server"}, "handlers", []string{"herald", "jetstream"}},
}

// writeSections writes each section whose benchmark is in the run: its
// prose, then its table.
func writeSections(p printer, res *results, sections []implSection) {
	for _, s := range sections {
		if len(res.values(s.base, "impl")) == 0 {
			continue
		}
		p("%s\n\n", prose(s.base))
		implTable(p, res, s)
	}
}

// prose returns the heading and paragraphs of base's section in
// sections.md: the one whose text starts by naming `Benchmark<base>`. It
// panics if there is none (TestEverySectionHasProse checks).
func prose(base string) string {
	for _, sec := range strings.Split(sectionsText, "\n## ")[1:] {
		_, text, _ := strings.Cut(sec, "\n\n")
		if strings.HasPrefix(text, "`Benchmark"+base+"`") {
			return "## " + strings.TrimSpace(sec)
		}
	}
	panic("report: sections.md has no section for Benchmark" + base)
}
