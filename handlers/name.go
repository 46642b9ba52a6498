package handlers

import (
	"fmt"
	"reflect"
	"strings"
	"unicode"
)

// Namer is implemented by event types that choose their own name. EventName is
// called once per type, on the zero value, and must return the same name for
// every value.
type Namer interface {
	EventName() string
}

// NameOf returns the event name of E: EventName() if E implements [Namer],
// otherwise the Go package name and type name ("orders.OrderPlaced"; a pointer
// type is named after its element). The name is validated with [ValidateName];
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
	if n, ok := reflect.New(base).Interface().(Namer); ok {
		name = n.EventName()
	} else {
		if base.Name() == "" || base.PkgPath() == "" {
			return "", fmt.Errorf("%w: type %s has no name of its own; give it an EventName() string method", ErrInvalidName, t)
		}
		if strings.Contains(base.Name(), "[") {
			return "", fmt.Errorf("%w: generic type %s: give it an EventName() string method", ErrInvalidName, t)
		}
		name = base.String() // package name (not path) + type name
	}
	if err := ValidateName(name); err != nil {
		return "", fmt.Errorf("event type %s: %w", t, err)
	}
	if strings.HasPrefix(name, "_") {
		return "", fmt.Errorf("%w: event name %q: names starting with '_' are reserved", ErrInvalidName, name)
	}
	return name, nil
}

// ValidateName reports whether name can be a NATS subject (or a part of one):
// dot-separated tokens, none empty, with no whitespace, control characters, '*'
// or '>'; at most 255 bytes. The error wraps [ErrInvalidName].
func ValidateName(name string) error {
	if name == "" {
		return fmt.Errorf("%w: empty name", ErrInvalidName)
	}
	if len(name) > 255 {
		return fmt.Errorf("%w: %q is longer than 255 bytes", ErrInvalidName, name[:32]+"...")
	}
	prev := '.'
	for _, r := range name {
		switch {
		case r == '.' && prev == '.':
			return fmt.Errorf("%w: %q has an empty token", ErrInvalidName, name)
		case r == '*' || r == '>':
			return fmt.Errorf("%w: %q contains the wildcard %q", ErrInvalidName, name, r)
		case unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar:
			return fmt.Errorf("%w: %q contains whitespace or a control character", ErrInvalidName, name)
		}
		prev = r
	}
	if prev == '.' {
		return fmt.Errorf("%w: %q has an empty token", ErrInvalidName, name)
	}
	return nil
}
