package main

import "testing"

const trackSample = `goos: linux
BenchmarkTrackMemory/tracking=off-2 	  156188	      1545 ns/op	    647122 events/s	      1545 ns/delivery	     760 B/op	       7 allocs/op
BenchmarkTrackMemory/tracking=on-2 	   55611	      4635 ns/op	    204804 events/s	      4635 ns/delivery	    1089 B/op	       9 allocs/op
BenchmarkTrackNATS/server=embedded/tracking=off-2 	    1987	    153248 ns/op	      6525 events/s	    153248 ns/delivery	   10286 B/op	     105 allocs/op
BenchmarkTrackNATS/server=embedded/tracking=on-2 	    1468	    169849 ns/op	      5888 events/s	    169849 ns/delivery	   18984 B/op	     208 allocs/op
PASS
`

// The tracking section has a row per transport, server and mode, and the
// ratio of on to off; a run without its benchmarks renders nothing.
func TestTrackSection(t *testing.T) {
	section{
		sample: trackSample,
		write:  writeTrack,
		want: []string{
			"## The cost of delivery tracking",
			"| memory | – | off |",
			"| memory | – | on |",
			"| NATS | embedded | on |",
			"| 3.00× (~) |",
		},
		rowPrefixes: []string{"memory", "NATS"},
		rows:        4,
	}.check(t)
}
