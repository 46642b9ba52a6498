package main

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"

	"golang.org/x/perf/benchfmt"
	"golang.org/x/perf/benchmath"
)

// confidence is the level of the confidence intervals around the medians.
const confidence = 0.95

// series is every run of one benchmark (one full name): each unit's values.
type series struct {
	base   string            // "MemoryThroughput"
	config map[string]string // sub-benchmark keys: "impl" → "herald", ...
	values map[string][]float64
}

// results holds the parsed benchmark output.
type results struct {
	series []*series
	config map[string]string // file configuration: goos, cpu, ...
}

// parse reads go test -bench output (any number of -count runs). Units are
// kept as printed (ns/op, not benchfmt's tidied sec/op).
func parse(r io.Reader, name string) (*results, error) {
	br := benchfmt.NewReader(r, name)
	res := &results{config: map[string]string{}}
	byName := map[string]*series{}
	for br.Scan() {
		rec, ok := br.Result().(*benchfmt.Result)
		if !ok {
			continue
		}
		for _, c := range rec.Config {
			if c.File {
				res.config[c.Key] = string(c.Value)
			}
		}
		base, parts := rec.Name.Parts()
		full := string(rec.Name.Full())
		s := byName[full]
		if s == nil {
			s = &series{base: string(base), config: map[string]string{}, values: map[string][]float64{}}
			for _, p := range parts {
				if p[0] != '/' {
					continue // -GOMAXPROCS
				}
				k, v, ok := strings.Cut(string(p[1:]), "=")
				if !ok {
					k, v = string(p[1:]), ""
				}
				s.config[k] = v
			}
			byName[full] = s
			res.series = append(res.series, s)
		}
		for _, v := range rec.Values {
			unit, val := v.Unit, v.Value
			if v.OrigUnit != "" {
				unit, val = v.OrigUnit, v.OrigValue
			}
			s.values[unit] = append(s.values[unit], val)
		}
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	if len(res.series) == 0 {
		return nil, fmt.Errorf("%s: no benchmark results", name)
	}
	return res, nil
}

// find returns the series of benchmark base whose configuration has every
// key=value pair of kv, or nil.
func (r *results) find(base string, kv ...string) *series {
next:
	for _, s := range r.series {
		if s.base != base {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if s.config[kv[i]] != kv[i+1] {
				continue next
			}
		}
		return s
	}
	return nil
}

// values returns the sorted distinct values of key among base's series.
func (r *results) values(base, key string, kv ...string) []string {
	var out []string
	for _, s := range r.series {
		if s.base != base {
			continue
		}
		if v, ok := s.config[key]; ok && !slices.Contains(out, v) {
			match := true
			for i := 0; i+1 < len(kv); i += 2 {
				match = match && s.config[kv[i]] == kv[i+1]
			}
			if match {
				out = append(out, v)
			}
		}
	}
	return out
}

// stat is the median of a unit's values and its confidence interval.
type stat struct {
	ok      bool
	n       int
	median  float64
	lo, hi  float64
	sample  *benchmath.Sample
	warning string
}

func (s *series) stat(unit string) stat {
	if s == nil {
		return stat{}
	}
	vals := s.values[unit]
	if len(vals) == 0 {
		return stat{}
	}
	sample := benchmath.NewSample(slices.Clone(vals), &benchmath.DefaultThresholds)
	sum := benchmath.AssumeNothing.Summary(sample, confidence)
	st := stat{ok: true, n: len(vals), median: sum.Center, lo: sum.Lo, hi: sum.Hi, sample: sample}
	if len(sum.Warnings) > 0 {
		st.warning = sum.Warnings[0].Error()
	}
	return st
}

// pct is the half-width of the confidence interval in percent of the
// median, as benchstat prints it ("±3%"), or "±∞" with too few runs.
func (st stat) pct() string {
	if math.IsInf(st.lo, 0) || math.IsInf(st.hi, 0) {
		return "±∞"
	}
	if st.median == 0 {
		return "±0%"
	}
	v := math.Max(st.hi/st.median-1, 1-st.lo/st.median)
	return fmt.Sprintf("±%.0f%%", 100*v)
}

// ratio is a/b of two medians, with the p-value of a Mann-Whitney U-test
// that the two samples differ (benchstat's test).
type ratio struct {
	ok bool
	v  float64
	p  float64
}

func ratioOf(a, b stat) ratio {
	if !a.ok || !b.ok || b.median == 0 {
		return ratio{}
	}
	c := benchmath.AssumeNothing.Compare(a.sample, b.sample)
	return ratio{ok: true, v: a.median / b.median, p: c.P}
}
