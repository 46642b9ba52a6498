// Package kafka is a Herald transport over Apache Kafka.
package kafka
