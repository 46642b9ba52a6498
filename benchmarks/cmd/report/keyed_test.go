package main

import "testing"

const keyedSample = `goos: linux
BenchmarkNATSKeyed/server=embedded/replicas=1/partitions=unkeyed-2         	   20000	     84695 ns/op	         3.000 consumers	     11807 events/s	     84695 ns/delivery	   10545 B/op	     109 allocs/op
BenchmarkNATSKeyed/server=embedded/replicas=1/partitions=1-2               	   20000	     97353 ns/op	         3.000 consumers	     10272 events/s	     97353 ns/delivery	   11067 B/op	     122 allocs/op
BenchmarkNATSKeyed/server=embedded/replicas=1/partitions=8-2               	   20000	    100462 ns/op	        10.00 consumers	      9954 events/s	    100462 ns/delivery	   11311 B/op	     121 allocs/op
BenchmarkNATSKeyed/server=embedded/replicas=3/partitions=unkeyed-2         	   20000	    100730 ns/op	         3.000 consumers	      9928 events/s	    100730 ns/delivery	   11040 B/op	     110 allocs/op
BenchmarkNATSKeyed/server=embedded/replicas=3/partitions=32-2              	   20000	    327985 ns/op	        34.00 consumers	      3049 events/s	    327985 ns/delivery	   11536 B/op	     124 allocs/op
PASS
`

// The keyed section has a row per server, replicas and partitions, with the
// consumers and the ratio to unkeyed.
func TestKeyedSection(t *testing.T) {
	section{
		sample: keyedSample,
		write:  writeKeyed,
		want: []string{
			"## NATS JetStream: ordering by key across replicas",
			"| embedded | 1 | unkeyed | 3 |",
			"| embedded | 1 | 8 | 10 |",
			"| embedded | 3 | 32 | 34 |",
			"| 0.31× (~) |",
		},
		rowPrefixes: []string{"embedded"},
		rows:        5,
	}.check(t)
}
