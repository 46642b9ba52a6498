package event

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"strings"
	"time"

	"github.com/heraldbus/herald/transport"
)

// SizePlan bounds the JSON encoding of one event type without encoding it. It is
// built once per type by [PlanJSON]; an in-process publish uses it to prove that
// an event can cross a process boundary (encodable, small enough) at the cost of
// a short reflective walk instead of a json.Marshal.
type SizePlan struct {
	size sizer // nil: the type's values must be encoded to be checked
}

// Bound returns an upper bound of the size of v's JSON encoding and true, or
// false when only encoding can tell (a NaN float, a map, an interface field, a
// type with its own MarshalJSON...). v must be of the planned type.
func (p SizePlan) Bound(v any) (int, bool) {
	if p.size == nil {
		return 0, false
	}
	return p.size(reflect.ValueOf(v))
}

type sizer func(v reflect.Value) (int, bool)

var (
	timeType          = reflect.TypeFor[time.Time]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// PlanJSON checks once that values of t can be JSON-encoded. It returns an error
// wrapping [transport.ErrInvalidEvent] when no value of t can be (a reachable channel,
// func, complex or unsafe pointer field), and a [SizePlan] otherwise.
func PlanJSON(t reflect.Type) (SizePlan, error) {
	s, err := compile(t, map[reflect.Type]bool{})
	if err != nil {
		return SizePlan{}, fmt.Errorf("%w: %s: %v", transport.ErrInvalidEvent, t, err)
	}
	return SizePlan{size: s}, nil
}

// compile returns a sizer for t, nil when values must be encoded to be checked,
// or an error when t can never be encoded.
func compile(t reflect.Type, visiting map[reflect.Type]bool) (sizer, error) {
	if visiting[t] {
		return nil, nil // recursive type: values may nest without bound, only encoding can tell
	}
	if t == timeType {
		return func(v reflect.Value) (int, bool) {
			tv, _ := reflect.TypeAssert[time.Time](v) // no allocation, unlike v.Interface()
			y := tv.Year()
			_, off := tv.Zone()
			// time.Time.MarshalJSON fails outside years [0, 9999] and zone
			// offsets of a day or more.
			return 40, y >= 0 && y <= 9999 && off > -24*3600 && off < 24*3600
		}, nil
	}
	if t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) ||
		reflect.PointerTo(t).Implements(jsonMarshalerType) || reflect.PointerTo(t).Implements(textMarshalerType) {
		return nil, nil // its own encoding: only encoding can tell
	}
	switch t.Kind() {
	case reflect.Bool:
		return constSize(5), nil
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return constSize(22), nil
	case reflect.Float32, reflect.Float64:
		return func(v reflect.Value) (int, bool) {
			f := v.Float()
			return 32, !math.IsNaN(f) && !math.IsInf(f, 0)
		}, nil
	case reflect.String:
		// Worst case every byte becomes \u00XX.
		return func(v reflect.Value) (int, bool) { return 2 + 6*v.Len(), true }, nil
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return nil, fmt.Errorf("%s values cannot be JSON-encoded", t.Kind())
	case reflect.Interface, reflect.Map:
		return nil, nil
	case reflect.Pointer:
		visiting[t] = true
		defer delete(visiting, t)
		elem, err := compile(t.Elem(), visiting)
		if err != nil || elem == nil {
			return nil, err
		}
		return func(v reflect.Value) (int, bool) {
			if v.IsNil() {
				return 4, true
			}
			return elem(v.Elem())
		}, nil
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && !reflect.PointerTo(t.Elem()).Implements(textMarshalerType) {
			return func(v reflect.Value) (int, bool) { return 6 + 4*(v.Len()+2)/3, true }, nil // base64
		}
		visiting[t] = true
		defer delete(visiting, t)
		elem, err := compile(t.Elem(), visiting)
		if err != nil || elem == nil {
			return nil, err
		}
		return func(v reflect.Value) (int, bool) {
			n := 4
			for i := range v.Len() {
				s, ok := elem(v.Index(i))
				if !ok {
					return 0, false
				}
				n += s + 1
			}
			return n, true
		}, nil
	case reflect.Struct:
		type field struct {
			index int
			size  sizer
		}
		visiting[t] = true
		defer delete(visiting, t)
		var fields []field
		fixed := 2
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() && !f.Anonymous {
				continue
			}
			tag := f.Tag.Get("json")
			if tag == "-" {
				continue
			}
			key, _, _ := strings.Cut(tag, ",")
			if key == "" {
				key = f.Name
			}
			s, err := compile(f.Type, visiting)
			if err != nil {
				return nil, fmt.Errorf("field %s: %w", f.Name, err)
			}
			if s == nil {
				return nil, nil
			}
			if strings.Contains(tag, ",string") {
				// Quoted numbers and bools; strings are quoted twice.
				inner := s
				s = func(v reflect.Value) (int, bool) { n, ok := inner(v); return 2 + 2*n, ok }
			}
			fixed += 4 + 6*len(key)
			fields = append(fields, field{index: i, size: s})
		}
		return func(v reflect.Value) (int, bool) {
			n := fixed
			for _, f := range fields {
				s, ok := f.size(v.Field(f.index))
				if !ok {
					return 0, false
				}
				n += s
			}
			return n, true
		}, nil
	}
	return nil, nil
}

func constSize(n int) sizer { return func(reflect.Value) (int, bool) { return n, true } }
