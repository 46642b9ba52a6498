package event_test

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/handlers"
	"github.com/heraldbus/herald/internal/event"
	"github.com/heraldbus/herald/transport"
)

// The plan (PlanJSON, SizePlan.Bound) proves in process what encoding/json
// would do across processes. Whenever Bound says ok, json.Marshal succeeds and
// is at most the bound; whenever the bus's codec encodes a value of an accepted
// type, json.Unmarshal decodes it into that type.

// valMarsh has its own JSON encoding (value receiver): a string, or an error.
type valMarsh struct{ V string }

func (m valMarsh) MarshalJSON() ([]byte, error) {
	switch m.V {
	case "fail":
		return nil, errors.New("valMarsh refuses")
	case "bad":
		return []byte(`{"unterminated`), nil
	}
	return json.Marshal(m.V)
}

func (m *valMarsh) UnmarshalJSON(b []byte) error { return json.Unmarshal(b, &m.V) }

// ptrMarsh has its own JSON encoding with a pointer receiver: encoding/json
// uses it only for addressable values, the default encoding otherwise; its
// UnmarshalJSON takes both.
type ptrMarsh struct{ V string }

func (m *ptrMarsh) MarshalJSON() ([]byte, error) {
	if m.V == "fail" {
		return nil, errors.New("ptrMarsh refuses")
	}
	return json.Marshal("p:" + m.V)
}

func (m *ptrMarsh) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		m.V = strings.TrimPrefix(s, "p:")
		return nil
	}
	var raw struct{ V string }
	err := json.Unmarshal(b, &raw)
	m.V = raw.V
	return err
}

// textKey is a TextMarshaler (value receiver) and a TextUnmarshaler: usable
// as a map key.
type textKey struct{ A, B uint8 }

func (k textKey) MarshalText() ([]byte, error) {
	if k.A == 13 {
		return nil, errors.New("textKey refuses 13")
	}
	return fmt.Appendf(nil, "%d-%d", k.A, k.B), nil
}

func (k *textKey) UnmarshalText(b []byte) error {
	_, err := fmt.Sscanf(string(b), "%d-%d", &k.A, &k.B)
	return err
}

// ptrText is a TextMarshaler with a pointer receiver.
type ptrText string

func (p *ptrText) MarshalText() ([]byte, error) {
	if *p == "fail" {
		return nil, errors.New("ptrText refuses")
	}
	return []byte(strings.ToUpper(string(*p))), nil
}

func (p *ptrText) UnmarshalText(b []byte) error { *p = ptrText(b); return nil }

// byteish is a byte with its own encoding: a []byteish is not base64.
type byteish uint8

func (b byteish) MarshalJSON() ([]byte, error) { return fmt.Appendf(nil, `"b%d"`, b), nil }

func (b *byteish) UnmarshalJSON(d []byte) error {
	_, err := fmt.Sscanf(string(d), `"b%d"`, (*uint8)(b))
	return err
}

type Numbers struct {
	N json.Number
	Q json.Number `json:"q,string"`
	P *json.Number
	L []json.Number
	A [2]json.Number
}

type NumbersMap struct {
	MN map[string]json.Number
	MA map[string]any
}

type Marshalers struct {
	V   valMarsh
	VP  *valMarsh
	P   ptrMarsh
	PP  *ptrMarsh
	PL  []ptrMarsh
	T   textKey
	TP  *textKey
	PT  ptrText
	PTP *ptrText
	M   map[textKey]int
	MP  map[string]ptrMarsh
	Raw json.RawMessage
	Tm  *time.Time
	TL  []time.Time
	Bs  []byteish
	Bt  [3]byte
	Bl  []byte
}

type Inner struct {
	A string
	B int `json:",string"`
}

type Other struct {
	A string // conflicts with Inner.A at the same depth: json drops both
	C []Inner
}

type hidden struct {
	H string
	//lint:ignore U1000 unexported: json ignores it
	h int
}

//lint:ignore U1000 embedded in Embeds, which json ignores
type hiddenNum int

type Embeds struct {
	Inner
	*Other
	hidden
	//lint:ignore U1000 unexported non-struct: ignored by json
	hiddenNum
	error       // unexported interface: ignored by json
	Named Inner `json:"named"`
	X     int
}

type Quoted struct {
	I  int     `json:",string"`
	F  float64 `json:"f,string"`
	F3 float32 `json:"f3,string"`
	S  string  `json:"s,string"`
	B  bool    `json:",string"`
	PI *int    `json:",string"`
	U  uint8   `json:",string"`
	//lint:ignore SA5008 not quoted: not a string, number or bool
	T  time.Time `json:",string"`
	OE string    `json:",omitempty"`
	OZ time.Time `json:",omitzero"`
}

type Tags struct {
	A int `json:"a b"`
	//lint:ignore SA5008 an invalid tag name: the field name is the key
	VeryLongFieldNameHere int `json:"x\"y"`
	HTML                  int `json:"<&>"`
	//lint:ignore SA5008 the key "-"
	Dash    int `json:"-,"`
	Skip    int `json:"-"`
	Unicode int `json:"é\u2028"`
}

type GenericJSON struct {
	Any  any
	M    map[string]any
	L    []any
	MS   map[string]string
	MI   map[int8]string
	MU   map[uint64]bool
	MT   map[textKey]string
	Nest map[string]map[string][]int
}

type Scalars struct {
	B   bool
	I8  int8
	I64 int64
	U   uint
	UP  uintptr
	F32 float32
	F64 float64
	S   string
	PS  *string
	PPS **string
	T   time.Time
}

type Blob []byte

type Wrapped struct {
	B  Blob
	PB *Blob
	AB [2]Blob
}

// planned are the types the differential checks; each must plan without
// error.
var planned = []reflect.Type{
	reflect.TypeFor[Numbers](), reflect.TypeFor[*Numbers](), reflect.TypeFor[json.Number](), reflect.TypeFor[NumbersMap](),
	reflect.TypeFor[Marshalers](), reflect.TypeFor[*Marshalers](),
	reflect.TypeFor[valMarsh](), reflect.TypeFor[*valMarsh](), reflect.TypeFor[ptrMarsh](), reflect.TypeFor[*ptrMarsh](),
	reflect.TypeFor[Embeds](), reflect.TypeFor[Quoted](), reflect.TypeFor[Tags](), reflect.TypeFor[GenericJSON](),
	reflect.TypeFor[Scalars](), reflect.TypeFor[Wrapped](), reflect.TypeFor[Rich](), reflect.TypeFor[*Rich](),
	reflect.TypeFor[FuzzEvent](), reflect.TypeFor[Tree](), reflect.TypeFor[[]Plain](), reflect.TypeFor[time.Time](),
	reflect.TypeFor[*time.Time](),
}

// entropy hands out the fuzzer's bytes; zeros once they run out, so that
// values stay small. inAny: filling a value held by an empty interface.
type entropy struct {
	b     []byte
	inAny bool
}

func (e *entropy) byte() byte {
	if len(e.b) == 0 {
		return 0
	}
	c := e.b[0]
	e.b = e.b[1:]
	return c
}

func (e *entropy) u64() uint64 {
	var buf [8]byte
	for i := range buf {
		buf[i] = e.byte()
	}
	return binary.LittleEndian.Uint64(buf[:])
}

var (
	numbers = []string{"", "0", "-0", "1", "-1.5e10", "12.5E+3", "1e", "01", "+1", "NaN", " 1", "1.", ".5",
		"-", "0x10", "1_000", "123456789012345678901234567890", "1e999", "not-a-number"}
	tricky = []string{"", "plain", "\"\\/", "<script>&</script>", "\u2028\u2029", "\x00\x1f\x7f", "\xff\xfe",
		"é", "\xed\xa0\x80", strings.Repeat("\x01", 40), "p:", "fail", "bad", "{}", "[", "null"}
	floats = []float64{0, math.Copysign(0, -1), 1e21, 1e-7, -1.5e300, math.MaxFloat64, math.SmallestNonzeroFloat64,
		math.NaN(), math.Inf(1), math.Inf(-1), math.MaxFloat32 * 2, 123456789.123456789}
	years = []int{2026, 0, 9999, -1, 10000, 1}
	zones = []*time.Location{time.UTC, time.FixedZone("a", 23*3600+59*60), time.FixedZone("b", -24*3600+60),
		time.FixedZone("c", 24*3600), time.FixedZone("d", -25*3600)}
	numberType = reflect.TypeFor[json.Number]()
	timeType   = reflect.TypeFor[time.Time]()
)

// fill sets v, a settable value, from e.
func fill(v reflect.Value, e *entropy, depth int) {
	t := v.Type()
	switch {
	case t == numberType:
		c := e.byte()
		if e.inAny {
			// An empty interface decodes a number as a float64: a literal
			// out of its range encodes but does not decode (left alone).
			v.SetString(numbers[int(c)%len(numbers)])
			if v.String() == "1e999" {
				v.SetString("1e99")
			}
			return
		}
		x := e.u64()
		switch {
		case int(c) < len(numbers):
			v.SetString(numbers[c])
		case c%4 == 0: // most likely invalid
			v.SetString(string(rune(c)) + strconv.FormatUint(x, 10))
		case c%4 == 1:
			v.SetString(strconv.FormatInt(int64(x), 10))
		default:
			f := math.Float64frombits(x)
			if math.IsNaN(f) || math.IsInf(f, 0) {
				f = 0
			}
			v.SetString(strconv.FormatFloat(f, "eEfg"[c%4], -1, 64))
		}
		return
	case t == timeType:
		y := years[int(e.byte())%len(years)]
		z := zones[int(e.byte())%len(zones)]
		v.Set(reflect.ValueOf(time.Date(y, time.Month(1+e.byte()%12), 1, 2, 3, 4, int(e.u64()%1e9), z)))
		return
	}
	switch t.Kind() {
	case reflect.Bool:
		v.SetBool(e.byte()&1 == 1)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		v.SetInt(int64(e.u64()) >> (e.byte() % 64))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		v.SetUint(e.u64() >> (e.byte() % 64))
	case reflect.Float32, reflect.Float64:
		c := e.byte()
		f := math.Float64frombits(e.u64())
		if t.Kind() == reflect.Float32 {
			f = float64(math.Float32frombits(uint32(math.Float64bits(f))))
		}
		if int(c) < len(floats) {
			f = floats[c]
		}
		v.SetFloat(f)
	case reflect.String:
		c := e.byte()
		if int(c) < len(tricky) {
			v.SetString(tricky[c])
			return
		}
		n := int(c) % 48
		b := make([]byte, n)
		for i := range b {
			b[i] = e.byte()
		}
		v.SetString(string(b))
	case reflect.Pointer:
		if e.byte()&1 == 0 || depth > 8 {
			return
		}
		p := reflect.New(t.Elem())
		fill(p.Elem(), e, depth+1)
		v.Set(p)
	case reflect.Slice:
		c := e.byte()
		if c&1 == 0 || depth > 8 {
			return
		}
		n := int(c>>1) % 5
		s := reflect.MakeSlice(t, n, n)
		for i := range n {
			fill(s.Index(i), e, depth+1)
		}
		v.Set(s)
	case reflect.Array:
		for i := range v.Len() {
			fill(v.Index(i), e, depth+1)
		}
	case reflect.Map:
		c := e.byte()
		if c&1 == 0 || depth > 8 {
			return
		}
		m := reflect.MakeMap(t)
		for range int(c>>1) % 4 {
			k, x := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
			fill(k, e, depth+1)
			fill(x, e, depth+1)
			m.SetMapIndex(k, x)
		}
		v.Set(m)
	case reflect.Interface:
		if t.NumMethod() != 0 {
			return
		}
		var x any
		switch e.byte() % 12 {
		case 1:
			x = math.Float64frombits(e.u64())
		case 2:
			x = tricky[int(e.byte())%len(tricky)]
		case 3:
			x = map[string]any{"k": 1, "n": []any{nil, true}}
		case 4:
			x = []any{"a", 2.5}
		case 5:
			x = Plain{A: int(e.byte())}
		case 6:
			x = make(chan int)
		case 7:
			n := reflect.New(numberType).Elem()
			fill(n, &entropy{b: []byte{e.byte()}, inAny: true}, depth+1)
			x = n.Interface()
		case 8:
			x = valMarsh{V: tricky[int(e.byte())%len(tricky)]}
		case 9:
			var n Numbers
			was := e.inAny
			e.inAny = true
			fill(reflect.ValueOf(&n).Elem(), e, depth+1)
			e.inAny = was
			x = n
		case 10:
			x = &ptrMarsh{V: "x"}
		}
		if x != nil {
			v.Set(reflect.ValueOf(x))
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if f := v.Field(i); f.CanSet() {
				fill(f, e, depth+1)
			}
		}
	}
}

// plans are the plans of the planned types, made once.
var plans = sync.OnceValue(func() []struct {
	plan event.SizePlan
	err  error
} {
	ps := make([]struct {
		plan event.SizePlan
		err  error
	}, len(planned))
	for i, typ := range planned {
		ps[i].plan, ps[i].err = event.PlanJSON(typ)
	}
	return ps
})

// outcome is what became of a value: proven by Bound, encoded only (Bound
// could not tell), or refused by the codec.
type outcome int

const (
	proven outcome = iota
	encodedOnly
	refused
)

// checkPlan fills a value of each planned type from data and checks Bound
// against encoding/json, and that what encodes decodes. It returns the
// outcome for each planned type.
func checkPlan(t *testing.T, data []byte) []outcome {
	t.Helper()
	out := make([]outcome, len(planned))
	for i, typ := range planned {
		plan, err := plans()[i].plan, plans()[i].err
		if err != nil {
			t.Fatalf("PlanJSON(%v): %v", typ, err)
		}
		v := reflect.New(typ).Elem()
		fill(v, &entropy{b: data}, 0)
		x := v.Interface()
		bound, ok := plan.Bound(x)
		enc, err := handlers.JSON{}.Marshal(x)
		if ok && err != nil {
			t.Fatalf("%v: Bound says ok (%d), the codec says %v; value %#v", typ, bound, err, x)
		}
		if ok && bound < len(enc) {
			t.Fatalf("%v: bound %d < encoded size %d: %s", typ, bound, len(enc), enc)
		}
		if _, jerr := json.Marshal(x); (jerr == nil) != (err == nil) && !errors.Is(err, transport.ErrInvalidEvent) {
			t.Fatalf("%v: json.Marshal says %v, the codec %v", typ, jerr, err)
		}
		switch {
		case ok:
			out[i] = proven
		case err == nil:
			out[i] = encodedOnly
		default:
			out[i] = refused
			continue
		}
		// What the bus sends must decode into the type the handler takes.
		if err := (handlers.JSON{}).Unmarshal(enc, reflect.New(typ).Interface()); err != nil {
			t.Fatalf("%v: %s encodes but does not decode: %v", typ, enc, err)
		}
	}
	return out
}

// TestPlanBoundAgreesWithEncodingJSON is the differential test over many
// random values of every planned type.
func TestPlanBoundAgreesWithEncodingJSON(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	n := 1000
	if testing.Short() {
		n = 200
	}
	seen := make([][3]int, len(planned))
	for range n {
		data := make([]byte, r.IntN(400))
		for i := range data {
			data[i] = byte(r.Uint32())
			if r.IntN(4) == 0 {
				data[i] %= 16 // small: more of the listed special values
			}
		}
		for i, o := range checkPlan(t, data) {
			seen[i][o]++
		}
	}
	// Each type's values are sometimes sent; those the walk can prove are
	// sometimes proven.
	provable := map[reflect.Type]bool{
		reflect.TypeFor[Numbers](): true, reflect.TypeFor[json.Number](): true, reflect.TypeFor[Embeds](): true,
		reflect.TypeFor[Quoted](): true, reflect.TypeFor[Tags](): true, reflect.TypeFor[Scalars](): true,
		reflect.TypeFor[Wrapped](): true, reflect.TypeFor[Rich](): true, reflect.TypeFor[*time.Time](): true,
	}
	for i, typ := range planned {
		if seen[i][proven]+seen[i][encodedOnly] == 0 || provable[typ] && seen[i][proven] == 0 {
			t.Errorf("%v: %d proven, %d encoded only, %d refused", typ, seen[i][proven], seen[i][encodedOnly], seen[i][refused])
		}
	}
}

func TestPlanJSONNumber(t *testing.T) {
	plan, err := event.PlanJSON(reflect.TypeFor[Numbers]())
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range numbers {
		_, jerr := json.Marshal(json.Number(n))
		for _, v := range []Numbers{{N: json.Number(n)}, {Q: json.Number(n)}, {L: []json.Number{"1", json.Number(n)}}} {
			bound, ok := plan.Bound(v)
			enc, err := json.Marshal(v)
			if ok != (jerr == nil) || ok && (err != nil || bound < len(enc)) {
				t.Errorf("json.Number %q: Bound %d, %v; json.Marshal %s, %v", n, bound, ok, enc, err)
			}
		}
	}
}

type Stringered struct{ S fmt.Stringer }
type Errs struct{ E []error }
type PtrIface struct{ P *fmt.Stringer }
type MapIface struct{ M map[string]fmt.Stringer }
type RecursiveIface struct {
	Next *RecursiveIface
	S    fmt.Stringer
}
type Opaque2 struct {
	M  map[string]int
	S  fmt.Stringer
	Ch chan int `json:"-"`
}
type onlyMarshalText struct{ A int }

func (onlyMarshalText) MarshalText() ([]byte, error) { return []byte("x"), nil }

type inner2 struct{ X int }
type EmbedsUnexportedPtr struct{ *inner2 }
type EmbedsUnexportedPtrTagged struct {
	*inner2 `json:"in"`
}

//lint:ignore U1000 embedded: no field json encodes
type embedsNothing struct{ x int }
type EmbedsEmptyUnexportedPtr struct {
	//lint:ignore U1000 embedded: no field json encodes
	*embedsNothing
	N int
}

// Undecodable or unencodable types are refused by PlanJSON, with
// ErrInvalidEvent; what encodes and decodes (empty interfaces, fields json
// ignores) is accepted.
func TestPlanJSONRefusesWhatCannotCrossAProcess(t *testing.T) {
	for _, typ := range []reflect.Type{
		reflect.TypeFor[fmt.Stringer](), reflect.TypeFor[error](), reflect.TypeFor[Stringered](),
		reflect.TypeFor[Errs](), reflect.TypeFor[PtrIface](), reflect.TypeFor[MapIface](),
		reflect.TypeFor[RecursiveIface](), reflect.TypeFor[Opaque2](),
		reflect.TypeFor[map[bool]int](), reflect.TypeFor[map[float64]int](), reflect.TypeFor[map[Plain]int](),
		reflect.TypeFor[map[any]int](), reflect.TypeFor[struct{ M map[[2]int]string }](),
		reflect.TypeFor[map[onlyMarshalText]int](), reflect.TypeFor[map[*textKey]int](),
		reflect.TypeFor[map[string]chan int](), reflect.TypeFor[[]func()](), reflect.TypeFor[struct{ C complex128 }](),
		reflect.TypeFor[EmbedsUnexportedPtr](), reflect.TypeFor[EmbedsUnexportedPtrTagged](),
	} {
		if _, err := event.PlanJSON(typ); !errors.Is(err, transport.ErrInvalidEvent) {
			t.Errorf("PlanJSON(%v): %v, want ErrInvalidEvent", typ, err)
		}
	}
	for _, typ := range []reflect.Type{
		reflect.TypeFor[any](), reflect.TypeFor[GenericJSON](), reflect.TypeFor[Embeds](), reflect.TypeFor[EmbedsEmptyUnexportedPtr](),
		reflect.TypeFor[struct {
			s fmt.Stringer
			c chan int
		}](),
		reflect.TypeFor[struct {
			S fmt.Stringer `json:"-"`
		}](),
		reflect.TypeFor[map[textKey]int](), reflect.TypeFor[map[ptrText]int](),
	} {
		if _, err := event.PlanJSON(typ); err != nil {
			t.Errorf("PlanJSON(%v): %v", typ, err)
		}
	}
}

// The codec refuses what the decoder would refuse for its depth, and only
// that: brackets in strings do not count. (A type nested deeper than the
// decoder's limit is never proven by Bound: depth_internal_test.go.)
func TestJSONCodecDepthCheckAgreesWithTheDecoder(t *testing.T) {
	for _, c := range []struct {
		depth int
		s     string
	}{
		{0, strings.Repeat("[{\\\"", 6000)}, // long enough to be scanned
		{10000, ""}, {10000, "]}"}, {10001, ""}, {10001, "[["},
	} {
		v := any(c.s)
		for i := range c.depth {
			if i%2 == 0 {
				v = []any{v}
			} else {
				v = map[string]any{"k\"[": v}
			}
		}
		enc, err := (handlers.JSON{}).Marshal(v)
		var back any
		derr := json.Unmarshal(mustMarshal(t, v), &back)
		if (err == nil) != (derr == nil) {
			t.Errorf("depth %d, string %.8q: codec %v, decoder %v", c.depth, c.s, err, derr)
		}
		if err != nil && !errors.Is(err, transport.ErrInvalidEvent) {
			t.Errorf("depth %d: %v, want ErrInvalidEvent", c.depth, err)
		}
		if err == nil && len(enc) == 0 {
			t.Error("empty encoding")
		}
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var boundSink int

// The walk of a flat event allocates nothing.
func TestBoundAllocatesNothing(t *testing.T) {
	type flat struct {
		ID    string
		N     int64
		F     float64
		At    time.Time
		Num   json.Number
		Tags  []string
		Inner Inner
	}
	plan, err := event.PlanJSON(reflect.TypeFor[flat]())
	if err != nil {
		t.Fatal(err)
	}
	var v any = flat{ID: "x", Num: "1.5", Tags: []string{"a"}, At: time.Now()}
	if n := testing.AllocsPerRun(100, func() {
		b, ok := plan.Bound(v)
		if !ok {
			t.Fatal("not proven")
		}
		boundSink = b
	}); n != 0 {
		t.Errorf("Bound allocates %v times", n)
	}
}
