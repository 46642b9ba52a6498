package event

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/transport"
)

// NameOf returns the event name of E: EventName() if E implements [handlers.Namer],
// otherwise the Go package name and type name ("orders.OrderPlaced"; a pointer
// type is named after its element). The name is validated with [transport.ValidName];
// an unnamed or generic type needs an EventName method.
func NameOf[E any]() (string, error) {
	return nameOf(reflect.TypeFor[E]())
}

func nameOf(t reflect.Type) (string, error) {
	base := t
	for base.Kind() == reflect.Pointer {
		base = base.Elem()
	}
	var name string
	// *T's method set holds T's too, so this finds value and pointer receivers.
	if n, ok := reflect.New(base).Interface().(handlers.Namer); ok {
		name = n.EventName()
	} else {
		if base.Name() == "" || base.PkgPath() == "" {
			return "", fmt.Errorf("%w: type %s has no name of its own; give it an EventName() string method", transport.ErrInvalidName, t)
		}
		if strings.Contains(base.Name(), "[") {
			return "", fmt.Errorf("%w: generic type %s: give it an EventName() string method", transport.ErrInvalidName, t)
		}
		name = base.String() // package name (not path) + type name
	}
	if err := transport.ValidName(name); err != nil {
		return "", fmt.Errorf("event type %s: %w", t, err)
	}
	if strings.HasPrefix(name, "_") {
		return "", fmt.Errorf("%w: event name %q: names starting with '_' are reserved", transport.ErrInvalidName, name)
	}
	return name, nil
}
