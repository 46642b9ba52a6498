package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

const observeSample = `goos: linux
BenchmarkObserveMemory/providers=none-2 	  200000	      2708 ns/op	    369272 events/s	      2708 ns/delivery	     704 B/op	       5 allocs/op
BenchmarkObserveMemory/providers=none-2 	  200000	      2808 ns/op	    356000 events/s	      2808 ns/delivery	     704 B/op	       5 allocs/op
BenchmarkObserveMemory/providers=both-2 	  200000	     28059 ns/op	     35639 events/s	     28059 ns/delivery	    9433 B/op	      54 allocs/op
BenchmarkObserveMemory/providers=both-2 	  200000	     28159 ns/op	     35500 events/s	     28159 ns/delivery	    9433 B/op	      54 allocs/op
BenchmarkObserveNATS/server=embedded/providers=none-2 	   20000	     65932 ns/op	     15167 events/s	     65932 ns/delivery	    9519 B/op	     103 allocs/op
BenchmarkObserveNATS/server=embedded/providers=both-2 	   20000	    108193 ns/op	      9243 events/s	    108193 ns/delivery	   15919 B/op	     152 allocs/op
PASS
`

// The observability section has a row per transport, server and mode, and
// the ratio of both to none.
func TestObserveSection(t *testing.T) {
	res, err := parse(strings.NewReader(observeSample), "sample")
	if err != nil {
		t.Fatal(err)
	}
	var md bytes.Buffer
	writeObserve(func(f string, a ...any) { md.WriteString(fmt.Sprintf(f, a...)) }, res)
	out := md.String()
	for _, want := range []string{
		"## The cost of observability",
		"| memory | – | none |",
		"| memory | – | both |",
		"| NATS | embedded | both |",
		"| 54.0 ",
		"| 10.2× (~) |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
	if n := strings.Count(out, "\n| memory") + strings.Count(out, "\n| NATS"); n != 4 {
		t.Errorf("%d rows, want 4:\n%s", n, out)
	}
	var empty bytes.Buffer
	writeObserve(func(f string, a ...any) { empty.WriteString(fmt.Sprintf(f, a...)) }, &results{})
	if empty.Len() != 0 {
		t.Errorf("a run without the benchmarks renders %q", empty.String())
	}
}
