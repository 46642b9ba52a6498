package event

import (
	"reflect"
	"testing"
)

type depthInner struct {
	L []int
	P *[2][]string
}

type depthOuter struct {
	A []depthInner
	B depthInner
	T struct{ N int }
}

// compile reports how deep a type's values nest: objects and arrays count,
// pointers, base64 byte slices and scalars do not.
func TestCompileDepth(t *testing.T) {
	for _, c := range []struct {
		typ   reflect.Type
		depth int
	}{
		{reflect.TypeFor[int](), 0},
		{reflect.TypeFor[*string](), 0},
		{reflect.TypeFor[[]byte](), 0},
		{reflect.TypeFor[[]int](), 1},
		{reflect.TypeFor[[][]*[]int](), 3},
		{reflect.TypeFor[depthInner](), 3}, // object, *[2] array, []string
		{reflect.TypeFor[depthOuter](), 5}, // object, []depthInner, depthInner
	} {
		s, d, err := compile(c.typ, map[reflect.Type]bool{})
		if err != nil || s == nil || d != c.depth {
			t.Errorf("%v: depth %d (sizer %v, %v), want %d", c.typ, d, s != nil, err, c.depth)
		}
	}
}

// A type that nests deeper than the decoder's limit is never proven.
func TestPlanRefusesToProveBeyondTheDepthLimit(t *testing.T) {
	v := depthOuter{A: []depthInner{{L: []int{1}}}}
	for limit, ok := range map[int]bool{4: false, 5: true, 6: true} {
		p, err := planJSON(reflect.TypeFor[depthOuter](), limit)
		if err != nil {
			t.Fatal(err)
		}
		if _, got := p.Bound(v); got != ok {
			t.Errorf("limit %d: Bound says %v", limit, got)
		}
	}
}
