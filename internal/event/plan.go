package event

import (
	"encoding"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/heraldbus/herald/transport"
)

// SizePlan bounds the JSON encoding of one event type without encoding it. It is
// built once per type by [PlanJSON]; an in-process publish uses it to prove that
// an event can cross a process boundary (encodable, decodable, small enough) at
// the cost of a short reflective walk instead of a json.Marshal.
type SizePlan struct {
	size sizer // nil: the type's values must be encoded to be checked
}

// Bound returns an upper bound of the size of v's JSON encoding and true when
// a walk of v proves that json.Marshal encodes v, in at most that many bytes,
// and that json.Unmarshal can decode the result (it nests at most 10000
// levels). It returns false when only encoding can tell: a NaN or infinite
// float, an invalid json.Number, a time outside what time.Time.MarshalJSON
// accepts, a map, an interface, a type with its own MarshalJSON or MarshalText,
// a recursive type. v must be of the planned type. Bound allocates nothing.
func (p SizePlan) Bound(v any) (int, bool) {
	if p.size == nil {
		return 0, false
	}
	rv := reflect.ValueOf(v)
	if !rv.IsValid() {
		return 0, false
	}
	return p.size(rv)
}

type sizer func(v reflect.Value) (int, bool)

var (
	timeType            = reflect.TypeFor[time.Time]()
	numberType          = reflect.TypeFor[json.Number]()
	jsonMarshalerType   = reflect.TypeFor[json.Marshaler]()
	textMarshalerType   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// PlanJSON checks once that values of t can cross a process boundary as JSON:
// that json.Marshal can encode them and json.Unmarshal decode them back into a
// t. It returns an error wrapping [transport.ErrInvalidEvent] when t reaches, through
// struct fields JSON encodes, elements, map values and pointers (nil or not),
// but not through a type with its own MarshalJSON or MarshalText:
//
//   - a channel, func, complex or unsafe pointer, which JSON cannot encode;
//   - an interface with methods (error, fmt.Stringer...), which JSON cannot
//     decode into; an empty interface (any) is accepted: its value crosses as
//     a generic JSON value (map[string]any, []any, float64, string, bool or
//     nil), not as the Go type it held;
//   - a map whose key type JSON cannot encode (not a string, an integer or an
//     encoding.TextMarshaler) or decode (no UnmarshalText on a pointer to it);
//   - an embedded pointer to an unexported struct type with fields, which
//     json.Unmarshal cannot allocate.
//
// Otherwise it returns a [SizePlan].
func PlanJSON(t reflect.Type) (SizePlan, error) { return planJSON(t, maxDepth) }

// planJSON is PlanJSON with a depth limit of its own, for tests.
func planJSON(t reflect.Type, limit int) (SizePlan, error) {
	s, depth, err := compile(t, map[reflect.Type]bool{})
	if err != nil {
		return SizePlan{}, fmt.Errorf("%w: %s: %w", transport.ErrInvalidEvent, t, err)
	}
	if depth > limit {
		s = nil // values may nest too deep to decode: only encoding can tell
	}
	return SizePlan{size: s}, nil
}

// compile returns a sizer for t and the deepest nesting of arrays and objects
// its values encode to; a nil sizer when values must be encoded to be checked;
// an error when no value of t can cross a process boundary.
func compile(t reflect.Type, visiting map[reflect.Type]bool) (sizer, int, error) {
	if visiting[t] {
		// Recursive type: values may nest without bound, only encoding can
		// tell. The type's parts are checked where it was first met.
		return nil, 0, nil
	}
	switch t {
	case timeType:
		return sizeTime, 0, nil
	case numberType:
		return sizeNumber, 0, nil
	}
	switch t.Kind() {
	case reflect.Pointer:
		// null, or its element's encoding (with the element's own marshaler,
		// if it has one: an element reached through a pointer is addressable).
		visiting[t] = true
		defer delete(visiting, t)
		elem, depth, err := compile(t.Elem(), visiting)
		if err != nil || elem == nil {
			return nil, 0, err
		}
		return func(v reflect.Value) (int, bool) {
			if v.IsNil() {
				return 4, true
			}
			return elem(v.Elem())
		}, depth, nil
	case reflect.Interface:
		if t.NumMethod() > 0 {
			return nil, 0, fmt.Errorf("interface %s has methods: JSON cannot decode into it", t)
		}
		return nil, 0, nil // any value: only encoding can tell
	}
	if ownEncoding(t) {
		return nil, 0, nil // only encoding can tell
	}
	switch t.Kind() {
	case reflect.Bool, reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		n, _ := fixedSize(t)
		return constSize(n), 0, nil
	case reflect.Float32, reflect.Float64:
		return func(v reflect.Value) (int, bool) {
			f := v.Float()
			return 32, !math.IsNaN(f) && !math.IsInf(f, 0)
		}, 0, nil
	case reflect.String:
		// Worst case every byte becomes \u00XX (or \ufffd, invalid UTF-8).
		// len(v.String()): String's fast path is inlined, Len's is a call.
		return func(v reflect.Value) (int, bool) { return 2 + 6*len(v.String()), true }, 0, nil
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return nil, 0, fmt.Errorf("%s values cannot be JSON-encoded", t.Kind())
	case reflect.Map:
		if err := checkMapKey(t.Key()); err != nil {
			return nil, 0, err
		}
		visiting[t] = true
		defer delete(visiting, t)
		if _, _, err := compile(t.Elem(), visiting); err != nil {
			return nil, 0, fmt.Errorf("map value: %w", err)
		}
		return nil, 0, nil // only encoding can tell
	case reflect.Slice, reflect.Array:
		if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 && !ownEncoding(t.Elem()) {
			return func(v reflect.Value) (int, bool) { return 6 + 4*(v.Len()+2)/3, true }, 0, nil // base64
		}
		visiting[t] = true
		defer delete(visiting, t)
		elem, depth, err := compile(t.Elem(), visiting)
		if err != nil || elem == nil {
			return nil, 0, err
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
		}, depth + 1, nil
	case reflect.Struct:
		return compileStruct(t, visiting)
	}
	return nil, 0, nil
}

// compileStruct compiles a struct's fields as encoding/json sees them. An
// embedded struct's fields are bounded as if they were a nested object, which
// is larger than their encoding flattened into t's.
func compileStruct(t reflect.Type, visiting map[reflect.Type]bool) (sizer, int, error) {
	type field struct {
		index int
		size  sizer
	}
	visiting[t] = true
	defer delete(visiting, t)
	var fields []field
	fixed, depth, provable := 2, 0, true
	for i := range t.NumField() {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		if tag == "-" || !encoded(f) {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if f.Anonymous && !f.IsExported() && f.Type.Kind() == reflect.Pointer && (name != "" || hasFields(f.Type.Elem())) {
			return nil, 0, fmt.Errorf("field %s: embedded pointer to an unexported struct type: JSON cannot decode into it", f.Name)
		}
		s, d, err := compile(f.Type, visiting)
		if err != nil {
			return nil, 0, fmt.Errorf("field %s: %w", f.Name, err)
		}
		if s == nil {
			provable = false // the other fields are still checked
			continue
		}
		quoted := slices.Contains(strings.Split(opts, ","), "string")
		// An invalid tag name is replaced by the field's name.
		fixed += 4 + 6*max(len(name), len(f.Name))
		if n, ok := fixedSize(f.Type); ok {
			// A bool or an integer: its bound needs no walk.
			if quoted {
				n = 2 + 2*n
			}
			fixed += n
			continue
		}
		if quoted {
			// Quoted numbers and bools; strings are quoted twice.
			inner := s
			s = func(v reflect.Value) (int, bool) { n, ok := inner(v); return 2 + 2*n, ok }
		}
		depth = max(depth, d)
		fields = append(fields, field{index: i, size: s})
	}
	if !provable {
		return nil, 0, nil
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
	}, depth + 1, nil
}

// encoded reports whether encoding/json encodes the struct field f (tags
// aside): exported fields, and embedded structs (or pointers to structs)
// whose exported fields it promotes.
func encoded(f reflect.StructField) bool {
	if f.IsExported() {
		return true
	}
	if !f.Anonymous {
		return false
	}
	t := f.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

// hasFields reports whether the struct type t has a field encoding/json may
// encode.
func hasFields(t reflect.Type) bool {
	if t.Kind() != reflect.Struct {
		return false
	}
	for i := range t.NumField() {
		if f := t.Field(i); f.Tag.Get("json") != "-" && encoded(f) {
			return true
		}
	}
	return false
}

// ownEncoding reports whether encoding/json encodes t's values with their
// MarshalJSON or MarshalText method (for some values when only *t has it:
// the addressable ones).
func ownEncoding(t reflect.Type) bool {
	switch t.Kind() {
	case reflect.Slice, reflect.Array, reflect.Map:
		if t.Name() == "" {
			return false // an unnamed type has no methods (only a struct may promote some)
		}
	}
	p := reflect.PointerTo(t)
	return t.Implements(jsonMarshalerType) || t.Implements(textMarshalerType) ||
		p.Implements(jsonMarshalerType) || p.Implements(textMarshalerType)
}

// checkMapKey refuses a map key type encoding/json cannot encode or decode.
func checkMapKey(k reflect.Type) error {
	switch k.Kind() {
	case reflect.String,
		reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return nil
	}
	if !k.Implements(textMarshalerType) {
		return fmt.Errorf("map key type %s cannot be JSON-encoded", k)
	}
	if !reflect.PointerTo(k).Implements(textUnmarshalerType) {
		return fmt.Errorf("map key type %s has no UnmarshalText: JSON cannot decode it", k)
	}
	return nil
}

func constSize(n int) sizer { return func(reflect.Value) (int, bool) { return n, true } }

// fixedSize returns the bound of every value of t when it does not depend on
// the value: a bool or an integer without an encoding of its own.
func fixedSize(t reflect.Type) (int, bool) {
	switch t.Kind() {
	case reflect.Bool:
		if !ownEncoding(t) {
			return 5, true
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		if !ownEncoding(t) {
			return 22, true
		}
	}
	return 0, false
}

// The Unix times of the first instant of years 0 and 10000: the years
// time.Time.MarshalJSON accepts are those whose instants, shifted by their
// zone offset, fall in between.
var (
	minJSONUnix = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
	endJSONUnix = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()
)

func sizeTime(v reflect.Value) (int, bool) {
	tv, _ := reflect.TypeAssert[time.Time](v) // no allocation, unlike v.Interface()
	_, off := tv.Zone()
	// time.Time.MarshalJSON fails outside years [0, 9999] (in tv's zone)
	// and for zone offsets of a day or more. The year is that of the
	// instant shifted by the offset: compared as Unix times, without
	// Year's second zone lookup and calendar arithmetic.
	u := tv.Unix() + int64(off)
	return 40, u >= minJSONUnix && u < endJSONUnix && off > -24*3600 && off < 24*3600
}

// sizeNumber bounds a json.Number, which encoding/json writes as it is ("" as
// 0) and refuses unless it is a valid JSON number literal.
func sizeNumber(v reflect.Value) (int, bool) {
	s := v.String()
	if s == "" {
		return 1, true
	}
	return len(s), validNumber(s)
}

// validNumber reports whether s is a JSON number literal (RFC 8259 section 6),
// as encoding/json checks a json.Number it encodes.
func validNumber(s string) bool {
	if s != "" && s[0] == '-' {
		s = s[1:]
	}
	switch {
	case s == "":
		return false
	case s[0] == '0':
		s = s[1:]
	case '1' <= s[0] && s[0] <= '9':
		s = skipDigits(s[1:])
	default:
		return false
	}
	if len(s) >= 2 && s[0] == '.' && isDigit(s[1]) {
		s = skipDigits(s[2:])
	}
	if len(s) >= 2 && (s[0] == 'e' || s[0] == 'E') {
		s = s[1:]
		if s[0] == '+' || s[0] == '-' {
			s = s[1:]
		}
		if s == "" || !isDigit(s[0]) {
			return false
		}
		s = skipDigits(s)
	}
	return s == ""
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func skipDigits(s string) string {
	for s != "" && isDigit(s[0]) {
		s = s[1:]
	}
	return s
}

// maxDepth is how deep encoding/json's decoder lets arrays and objects nest
// (its maxNestingDepth).
const maxDepth = 10000
