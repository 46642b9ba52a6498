package main

import (
	"strconv"
	"strings"
)

// The columns that end every row of the throughput tables: perfHead's
// titles, perfAlign's alignments and perfCells' values.
const (
	perfHead  = "events/s | ns/event | B/event | allocs/event"
	perfAlign = "---:|---:|---:|---:"
)

// perfCells formats s's events/s, ns/op, B/op and allocs/op, each median
// with its confidence interval.
func perfCells(s *series) string {
	return strings.Join([]string{cell(s.stat("events/s"), fmtRate), cell(s.stat("ns/op"), fmtNs),
		cell(s.stat("B/op"), fmtNum), cell(s.stat("allocs/op"), fmtNum)}, " | ")
}

// implTable writes the table of section s: for each combination of its
// groups' values (outer first), for each value of its key, a row per
// implementation with its perfCells and, on the first implementation's row,
// its events/s divided by each other one's. A group column of numbers is
// right-aligned.
func implTable(p printer, res *results, s implSection) {
	head, align := "|", "|"
	for _, g := range s.groups {
		head += " " + g + " |"
		align += "---|"
		if numeric(res.values(s.base, g)) {
			align = strings.TrimSuffix(align, "---|") + "---:|"
		}
	}
	head += " " + s.key + " | implementation | " + perfHead
	align += "---:|---|" + perfAlign + "|"
	for _, impl := range s.impls[1:] {
		head, align = head+" | ÷ "+impl, align+"---:|"
	}
	p("%s |\n%s\n", head, align)
	implRows(p, res, s, "|", nil)
	p("\n")
}

// implRows writes the rows of s under the group values in kv (key, value
// pairs), whose cells so far are prefix.
func implRows(p printer, res *results, s implSection, prefix string, kv []string) {
	if g := len(kv) / 2; g < len(s.groups) {
		for _, v := range res.values(s.base, s.groups[g], kv...) {
			implRows(p, res, s, prefix+" "+v+" |", append(kv[:len(kv):len(kv)], s.groups[g], v))
		}
		return
	}
	find := func(impl, v string) *series {
		return res.find(s.base, append([]string{"impl", impl, s.key, v}, kv...)...)
	}
	for _, v := range res.values(s.base, s.key, kv...) {
		first := find(s.impls[0], v).stat("events/s")
		for _, impl := range s.impls {
			sr := find(impl, v)
			if sr == nil {
				continue
			}
			row := prefix + " " + v + " | " + label(impl) + " | " + perfCells(sr)
			for _, other := range s.impls[1:] {
				r := ""
				if impl == s.impls[0] {
					r = fmtRatioP(ratioOf(first, find(other, v).stat("events/s")))
				}
				row += " | " + r
			}
			p("%s |\n", row)
		}
	}
}

// numeric reports whether every value is a number.
func numeric(values []string) bool {
	for _, v := range values {
		if _, err := strconv.ParseFloat(v, 64); err != nil {
			return false
		}
	}
	return len(values) > 0
}
