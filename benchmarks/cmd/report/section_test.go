package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

// section is a test of one benchmark section: write renders it from the
// benchmark output sample; the markdown must hold every want and exactly rows
// table rows (lines starting "| " and one of rowPrefixes); a run without its
// benchmarks renders nothing.
type section struct {
	sample      string
	write       func(printer, *results)
	want        []string
	rowPrefixes []string
	rows        int
}

func (s section) check(t *testing.T) {
	t.Helper()
	res, err := parse(strings.NewReader(s.sample), "sample")
	if err != nil {
		t.Fatal(err)
	}
	render := func(res *results) string {
		var md bytes.Buffer
		s.write(func(f string, a ...any) { md.WriteString(fmt.Sprintf(f, a...)) }, res)
		return md.String()
	}
	out := render(res)
	for _, want := range s.want {
		if !strings.Contains(out, want) {
			t.Errorf("section lacks %q:\n%s", want, out)
		}
	}
	n := 0
	for _, p := range s.rowPrefixes {
		n += strings.Count(out, "\n| "+p)
	}
	if n != s.rows {
		t.Errorf("%d rows, want %d:\n%s", n, s.rows, out)
	}
	if empty := render(&results{}); empty != "" {
		t.Errorf("a run without the benchmarks renders %q", empty)
	}
}
