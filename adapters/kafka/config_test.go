package kafka_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/heraldbus/herald/adapters/kafka"
	"github.com/heraldbus/herald/transport"
)

func TestConfigValidated(t *testing.T) {
	cases := []struct {
		name string
		cfg  kafka.Config
	}{
		{"broker with a space", kafka.Config{Brokers: []string{"host :9092"}}},
		{"empty broker", kafka.Config{Brokers: []string{""}}},
		{"broker list in one string", kafka.Config{Brokers: []string{"a:1,b:2"}}},
		{"nil client option", kafka.Config{ClientOptions: []kgo.Opt{nil}}},
		{"topic prefix with a slash", kafka.Config{TopicPrefix: "a/b."}},
		{"topic prefix too long", kafka.Config{TopicPrefix: strings.Repeat("p", 101)}},
		{"group prefix with a newline", kafka.Config{GroupPrefix: "a\nb"}},
		{"StartAt a zero time", kafka.Config{StartFrom: kafka.StartAt(time.Time{})}},
		{"topic config with a newline", kafka.Config{TopicConfigs: map[string]string{"retention.ms": "1\n"}}},
		{"negative partitions", kafka.Config{Partitions: -1}},
		{"too many partitions", kafka.Config{Partitions: 10_001}},
		{"replication factor above 32", kafka.Config{ReplicationFactor: 33}},
		{"MaxMessageBytes below 1 KiB", kafka.Config{MaxMessageBytes: 100}},
		{"MaxMessageBytes above 64 MiB", kafka.Config{MaxMessageBytes: 65 << 20}},
		{"negative prefetch", kafka.Config{Prefetch: -1}},
		{"negative NakDelay", kafka.Config{NakDelay: -time.Second}},
		{"NakDelay above a day", kafka.Config{NakDelay: 25 * time.Hour}},
		{"CommitInterval above a minute", kafka.Config{CommitInterval: 2 * time.Minute}},
		{"RevokeTimeout below 1ms", kafka.Config{RevokeTimeout: time.Microsecond}},
		{"LocalRedeliveries below -1", kafka.Config{LocalRedeliveries: -2}},
		{"LocalRedeliveries above 100", kafka.Config{LocalRedeliveries: 101}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tr, err := kafka.New(tc.cfg)
			if !errors.Is(err, transport.ErrInvalidOption) {
				if tr != nil {
					_ = tr.Close()
				}
				t.Fatalf("New: %v, want ErrInvalidOption", err)
			}
			if !strings.HasPrefix(err.Error(), "herald/kafka: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestConfigDefaults(t *testing.T) {
	tr, err := kafka.New(kafka.Config{NakDelay: time.Minute, LocalRedeliveries: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Close() }()
	c := tr.Config()
	if len(c.Brokers) != 1 || c.Brokers[0] != kafka.DefaultBroker || c.TopicPrefix != kafka.DefaultTopicPrefix ||
		c.GroupPrefix != kafka.DefaultGroupPrefix || c.Partitions != kafka.DefaultPartitions ||
		c.MaxMessageBytes != kafka.DefaultMaxMessageBytes || c.Prefetch != kafka.DefaultPrefetch ||
		c.SessionTimeout != kafka.DefaultSessionTimeout || c.Logger == nil {
		t.Errorf("defaults: %+v", c)
	}
	if c.MaxNakDelay != time.Minute {
		t.Errorf("MaxNakDelay %v, want NakDelay (1m) when the default is below it", c.MaxNakDelay)
	}
	if c.LocalRedeliveries != 0 {
		t.Errorf("LocalRedeliveries -1 became %d, want 0 (none)", c.LocalRedeliveries)
	}
}

func TestTopicNames(t *testing.T) {
	tr, err := kafka.New(kafka.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Close() }()
	cases := []struct{ name, want string }{
		{"orders.OrderPlaced", "herald.orders.OrderPlaced"},
		{transport.ReplayTopic("billing.charge"), "herald._replay.billing.charge"},
		{"a_b", "herald.a_b"},
	}
	for _, tc := range cases {
		if got := tr.Topic(tc.name); got != tc.want {
			t.Errorf("Topic(%q) = %q, want %q", tc.name, got, tc.want)
		}
	}
	// Names with characters Kafka refuses, or too long, are mapped to legal
	// distinct names.
	seen := map[string]string{}
	for _, name := range []string{"a/b", "a:b", "a_b", "ünïcode.Event", strings.Repeat("x", 300), strings.Repeat("x", 301)} {
		got := tr.Topic(name)
		if len(got) > 249 || strings.ContainsFunc(got, func(r rune) bool {
			return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
		}) {
			t.Errorf("Topic(%q) = %q: not a legal Kafka topic", name, got)
		}
		if other, dup := seen[got]; dup {
			t.Errorf("Topic(%q) = Topic(%q) = %q", name, other, got)
		}
		seen[got] = name
	}
	if got := tr.Group("billing.charge"); got != "herald.billing.charge" {
		t.Errorf("Group = %q", got)
	}
}
