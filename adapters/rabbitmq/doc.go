// Package rabbitmq is a Herald transport over RabbitMQ (3.10 or newer, no
// plugin needed).
package rabbitmq
