package main

import "testing"

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
	section{
		sample: observeSample,
		write:  writeObserve,
		want: []string{
			"## The cost of observability",
			"| memory | – | none |",
			"| memory | – | both |",
			"| NATS | embedded | both |",
			"| 54.0 ",
			"| 10.2× (~) |",
		},
		rowPrefixes: []string{"memory", "NATS"},
		rows:        4,
	}.check(t)
}
