package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

const sample = `goos: linux
goarch: amd64
pkg: github.com/heraldbus/herald/benchmarks
cpu: AMD EPYC
BenchmarkMemoryThroughput/impl=herald/handlers=10-2  	   79116	     13928 ns/op	     71798 events/s	     1393 ns/delivery	    4496 B/op	      33 allocs/op
BenchmarkMemoryThroughput/impl=herald/handlers=10-2  	   79116	     14928 ns/op	     66798 events/s	     1493 ns/delivery	    4496 B/op	      33 allocs/op
BenchmarkMemoryThroughput/impl=herald/handlers=10-2  	   79116	     12928 ns/op	     77798 events/s	     1293 ns/delivery	    4496 B/op	      33 allocs/op
BenchmarkMemoryThroughput/impl=cqrs/handlers=10-2    	    4796	    343571 ns/op	      2911 events/s	     34357 ns/delivery	   26207 B/op	     376 allocs/op
BenchmarkMemoryThroughput/impl=cqrs/handlers=10-2    	    4796	    353571 ns/op	      2811 events/s	     35357 ns/delivery	   26207 B/op	     376 allocs/op
BenchmarkMemoryThroughput/impl=cqrs/handlers=10-2    	    4796	    333571 ns/op	      3011 events/s	     33357 ns/delivery	   26207 B/op	     376 allocs/op
BenchmarkMemoryLatency/mode=single/impl=herald/handlers=1-2  	  355159	      3196 ns/op	         1.523 p50-µs	        12.35 p99-µs	        92.35 p999-µs	     752 B/op	       6 allocs/op
PASS
`

func TestParse(t *testing.T) {
	res, err := parse(strings.NewReader(sample), "sample")
	if err != nil {
		t.Fatal(err)
	}
	if got := res.config["cpu"]; got != "AMD EPYC" {
		t.Errorf("cpu = %q", got)
	}
	h := res.find("MemoryThroughput", "impl", "herald", "handlers", "10")
	if h == nil {
		t.Fatal("herald series not found")
	}
	if st := h.stat("ns/op"); !st.ok || st.n != 3 || st.median != 13928 {
		t.Errorf("ns/op stat = %+v, want the median of 3 runs, 13928 (units kept as printed)", st)
	}
	if st := h.stat("events/s"); st.median != 71798 {
		t.Errorf("events/s median = %v", st.median)
	}
	c := res.find("MemoryThroughput", "impl", "cqrs", "handlers", "10")
	r := ratioOf(h.stat("events/s"), c.stat("events/s"))
	if !r.ok || r.v < 24 || r.v > 25 {
		t.Errorf("ratio = %+v", r)
	}
	if st := res.find("MemoryLatency", "mode", "single").stat("p99-µs"); st.median != 12.35 {
		t.Errorf("p99 = %+v", st)
	}
	if got := res.values("MemoryThroughput", "impl"); len(got) != 2 {
		t.Errorf("impls = %v", got)
	}
	if res.find("MemoryThroughput", "impl", "chan") != nil {
		t.Error("found a series that is not there")
	}
}

func TestParseEmpty(t *testing.T) {
	if _, err := parse(strings.NewReader("PASS\n"), "empty"); err == nil {
		t.Error("no error for output without results")
	}
}

func TestReportAndCharts(t *testing.T) {
	res, err := parse(strings.NewReader(sample), "sample")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	charts, err := writeCharts(res, dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(charts) < 2 {
		t.Errorf("charts = %v", charts)
	}
	var md bytes.Buffer
	writeReport(&md, res, runInfo{Count: 3, Benchtime: "1s", RawFile: "results.txt"}, "charts", charts)
	for _, want := range []string{"## Targets", "in-memory throughput, 10 handler(s): Herald ≥ 40× cqrs | 24.7×", "memory_throughput.png"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q", want)
		}
	}
}

func TestShellJoin(t *testing.T) {
	if got := shellJoin([]string{"test", "-run", "^$", "-bench", "."}); got != "test -run '^$' -bench ." {
		t.Errorf("shellJoin = %q", got)
	}
}

func TestEverySectionHasProse(t *testing.T) {
	for _, s := range append(append([]implSection{}, natsSections...), brokerSections...) {
		if got := prose(s.base); !strings.Contains(got, "`Benchmark"+s.base+"`") || !strings.HasPrefix(got, "## ") {
			t.Errorf("%s: prose %q", s.base, got)
		}
	}
}

// A section split by two groups, the inner one numeric: one column each,
// the numeric one right-aligned, and the ratio on Herald's row only.
func TestImplTableWithTwoGroups(t *testing.T) {
	const runs = `BenchmarkNATSPerEvent/server=embedded/publishers=8/handlers=1/impl=herald-2  	 100	 1000 ns/op	 1000 events/s	 100 B/op	 1 allocs/op
BenchmarkNATSPerEvent/server=embedded/publishers=8/handlers=1/impl=jetstream-2  	 100	 2000 ns/op	 500 events/s	 50 B/op	 1 allocs/op
PASS
`
	res, err := parse(strings.NewReader(runs), "runs")
	if err != nil {
		t.Fatal(err)
	}
	var md strings.Builder
	p := func(format string, args ...any) { fmt.Fprintf(&md, format, args...) }
	writeSections(p, res, []implSection{{"NATSPerEvent", []string{"server", "publishers"}, "handlers", []string{"herald", "jetstream"}}})
	lines := strings.Split(md.String(), "\n")
	if !strings.HasPrefix(lines[0], "## NATS JetStream: one event per request") {
		t.Fatalf("heading: %q", lines[0])
	}
	var table []string
	for _, l := range lines {
		if strings.HasPrefix(l, "|") {
			table = append(table, l)
		}
	}
	want := []string{
		"| server | publishers | handlers | implementation | " + perfHead + " | ÷ jetstream |",
		"|---|---:|---:|---|" + perfAlign + "|---:|",
	}
	if len(table) != 4 || table[0] != want[0] || table[1] != want[1] {
		t.Fatalf("table:\n%s", strings.Join(table, "\n"))
	}
	if !strings.HasPrefix(table[2], "| embedded | 8 | 1 | Herald |") || !strings.Contains(table[2], "2.0") || !strings.HasSuffix(table[3], "|  |") {
		t.Errorf("rows:\n%s\n%s", table[2], table[3])
	}
}
