package middleware

import (
	"github.com/ThreeDotsLabs/watermill/message"

	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// Correlation makes sure every delivery has a correlation ID (an event from a
// foreign publisher without one starts a chain of its own: its correlation ID is
// its ID) and that messages a watermill handler returns carry the correlation ID
// of the event being handled and its ID as their causation ID (for chains a
// watermill Router runs, which publishes them; the bus does not publish
// returned messages). Typed handlers publish with their ctx instead, which does
// the same.
func Correlation(h message.HandlerFunc) message.HandlerFunc {
	return func(msg *message.Message) ([]*message.Message, error) {
		id, correlationID := event.EnsureCorrelationID(msg)
		out, err := h(msg)
		if id != "" {
			for _, m := range out {
				if m.Metadata == nil {
					m.Metadata = make(message.Metadata, 2)
				}
				if m.Metadata.Get(transport.KeyCorrelationID) == "" {
					m.Metadata.Set(transport.KeyCorrelationID, correlationID)
				}
				if m.Metadata.Get(transport.KeyCausationID) == "" {
					m.Metadata.Set(transport.KeyCausationID, id)
				}
			}
		}
		return out, err
	}
}
