package main

import "strings"

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

// implTable writes the table comparing base's implementations impls (Herald
// first): for each value of group (the whole table when group is ""), for
// each value of key, a row per implementation with its perfCells and, on
// the first implementation's row, its events/s divided by each other one's.
func implTable(p printer, res *results, base, group, key string, impls []string) {
	head, align := "| ", "|"
	groups := []string{""}
	if group != "" {
		head, align = head+group+" | ", align+"---|"
		groups = res.values(base, group)
	}
	head += key + " | implementation | " + perfHead
	align += "---:|---|" + perfAlign + "|"
	for _, impl := range impls[1:] {
		head, align = head+" | ÷ "+impl, align+"---:|"
	}
	p("%s |\n%s\n", head, align)
	for _, g := range groups {
		var kv []string
		if group != "" {
			kv = []string{group, g}
		}
		find := func(impl, v string) *series {
			return res.find(base, append([]string{"impl", impl, key, v}, kv...)...)
		}
		for _, v := range res.values(base, key, kv...) {
			first := find(impls[0], v).stat("events/s")
			for _, impl := range impls {
				s := find(impl, v)
				if s == nil {
					continue
				}
				row := "| "
				if group != "" {
					row += g + " | "
				}
				row += v + " | " + label(impl) + " | " + perfCells(s)
				for _, other := range impls[1:] {
					r := ""
					if impl == impls[0] {
						r = fmtRatioP(ratioOf(first, find(other, v).stat("events/s")))
					}
					row += " | " + r
				}
				p("%s |\n", row)
			}
		}
	}
	p("\n")
}
