package kafka

import "github.com/heraldbus/herald/internal/adapterkit"

// Topic and group names. An event topic T (an event name, or
// transport.ReplayTopic(H)) is the Kafka topic TopicPrefix+T when T has only
// the characters Kafka allows; otherwise its other characters become '_' and
// "-" plus 12 hex digits of a hash of T follow, so that distinct names stay
// distinct. Kafka caps a topic name at 249 bytes: a longer one is cut and
// hashed the same way. A handler H consumes as the group GroupPrefix+H.

const maxTopicLen = 249

// legalTopic reports whether s has only the characters of a Kafka topic name.
func legalTopic(s string) bool {
	for i := 0; i < len(s); i++ {
		if !legalTopicByte(s[i]) {
			return false
		}
	}
	return true
}

func legalTopicByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
}

// kafkaTopic returns the Kafka topic of the Herald topic name under prefix.
func kafkaTopic(prefix, name string) string {
	if legalTopic(name) && len(prefix)+len(name) <= maxTopicLen {
		return prefix + name
	}
	return prefix + adapterkit.Squeeze(name, maxTopicLen-len(prefix)-13, legalTopicByte, '-')
}
