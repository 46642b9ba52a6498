// Package herald is the root of Herald, a typed publish-subscribe event bus for
// Go. The API is in package bus; transports are in adapters/memory and
// adapters/nats; middleware in package middleware; test support in bustest.
// This package holds only the end-to-end tests of the public API.
package herald
