package main

import (
	"fmt"
	"image/color"
	"path/filepath"
	"strconv"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// Colors and labels of the implementations, the same on every chart.
var implStyle = map[string]struct {
	label string
	color color.RGBA
	dash  []vg.Length
}{
	"herald":         {"Herald", color.RGBA{R: 0xd6, G: 0x27, B: 0x28, A: 0xff}, nil},
	"cqrs":           {"Watermill cqrs + GoChannel", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, nil},
	"chan":           {"Go channel (floor)", color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, []vg.Length{vg.Points(4), vg.Points(3)}},
	"watermill-nats": {"raw watermill-nats", color.RGBA{R: 0x1f, G: 0x77, B: 0xb4, A: 0xff}, nil},
	"jetstream":      {"raw nats.go jetstream (floor)", color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, []vg.Length{vg.Points(4), vg.Points(3)}},
	"franz-go":       {"raw franz-go (floor)", color.RGBA{R: 0x7f, G: 0x7f, B: 0x7f, A: 0xff}, []vg.Length{vg.Points(4), vg.Points(3)}},
}

func label(impl string) string {
	if s, ok := implStyle[impl]; ok {
		return s.label
	}
	return impl
}

// chart is one PNG written into the charts directory.
type chart struct {
	file  string // base name
	title string
}

// writeCharts draws every chart the results allow and returns them.
func writeCharts(res *results, dir string) ([]chart, error) {
	var out []chart
	add := func(c chart, p *plot.Plot, err error) error {
		if err != nil {
			return fmt.Errorf("chart %s: %w", c.file, err)
		}
		if p == nil {
			return nil
		}
		if err := p.Save(16*vg.Centimeter, 10*vg.Centimeter, filepath.Join(dir, c.file)); err != nil {
			return fmt.Errorf("chart %s: %w", c.file, err)
		}
		out = append(out, c)
		return nil
	}
	impls := []string{"herald", "cqrs", "chan"}
	p, err := linesByImpl(res, "MemoryThroughput", "handlers", "events/s", impls, nil,
		"In-memory throughput vs handlers (events published/s, all handlers served)", "handlers", "events/s", true)
	if err := add(chart{"memory_throughput.png", "In-memory throughput vs handler count"}, p, err); err != nil {
		return nil, err
	}
	p, err = linesByImpl(res, "MemoryThroughput", "handlers", "ns/delivery", impls, nil,
		"In-memory cost per delivery (one event to one handler) vs handlers", "handlers", "ns per delivery", true)
	if err := add(chart{"memory_cost_per_delivery.png", "In-memory cost per delivery vs handler count (flat = linear)"}, p, err); err != nil {
		return nil, err
	}
	for _, mode := range res.values("MemoryLatency", "mode") {
		p, err = latencyChart(res, mode, impls)
		if err := add(chart{"memory_latency_" + mode + ".png", "In-memory latency percentiles, mode=" + mode}, p, err); err != nil {
			return nil, err
		}
	}
	nimpls := natsImpls
	for _, srv := range res.values("NATSPublish", "server") {
		p, err = linesByImpl(res, "NATSPublish", "publishers", "events/s", nimpls, []string{"server", srv},
			"NATS JetStream publish, each waiting for its PubAck ("+srv+" server)", "concurrent publishers", "events/s", false)
		if err := add(chart{"nats_publishers_" + srv + ".png", "NATS throughput vs concurrent publishers, " + srv + " server"}, p, err); err != nil {
			return nil, err
		}
	}
	for _, srv := range res.values("NATSEndToEnd", "server") {
		p, err = e2eChart(res, srv, nimpls)
		if err := add(chart{"nats_end_to_end_" + srv + ".png", "NATS end-to-end throughput, " + srv + " server"}, p, err); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top = true
	p.Add(plotter.NewGrid())
	return p
}

// linesByImpl plots unit (median) against the numeric sub-benchmark key x,
// one line per implementation.
func linesByImpl(res *results, base, x, unit string, impls, filter []string, title, xl, yl string, logY bool) (*plot.Plot, error) {
	p := newPlot(title, xl, yl)
	p.X.Scale = plot.LogScale{}
	p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	} else {
		p.Y.Min = 0
	}
	lines, top := 0, 0.0
	for _, impl := range impls {
		var pts plotter.XYs
		for _, xv := range res.values(base, x, append([]string{"impl", impl}, filter...)...) {
			xf, err := strconv.ParseFloat(xv, 64)
			if err != nil {
				continue
			}
			st := res.find(base, append([]string{"impl", impl, x, xv}, filter...)...).stat(unit)
			if st.ok && (!logY || st.median > 0) {
				pts = append(pts, plotter.XY{X: xf, Y: st.median})
				top = max(top, st.median)
			}
		}
		if len(pts) == 0 {
			continue
		}
		sortXY(pts)
		if err := addLine(p, impl, pts); err != nil {
			return nil, err
		}
		lines++
	}
	if lines == 0 {
		return nil, nil
	}
	if logY {
		p.Y.Max = top * 8 // room for the legend
	} else {
		p.Y.Max = top * 1.35
	}
	return p, nil
}

func addLine(p *plot.Plot, impl string, pts plotter.XYs) error {
	l, s, err := plotter.NewLinePoints(pts)
	if err != nil {
		return err
	}
	st := implStyle[impl]
	l.Color, s.Color = st.color, st.color
	l.Width = vg.Points(1.5)
	l.Dashes = st.dash
	s.Shape = draw.CircleGlyph{}
	p.Add(l, s)
	p.Legend.Add(label(impl), l, s)
	return nil
}

func sortXY(pts plotter.XYs) {
	for i := 1; i < len(pts); i++ {
		for j := i; j > 0 && pts[j].X < pts[j-1].X; j-- {
			pts[j], pts[j-1] = pts[j-1], pts[j]
		}
	}
}

var percentiles = []struct{ unit, label string }{{"p50-µs", "p50"}, {"p99-µs", "p99"}, {"p999-µs", "p99.9"}}

// latencyChart plots p50, p99 and p99.9 (log µs) per implementation.
func latencyChart(res *results, mode string, impls []string) (*plot.Plot, error) {
	p := newPlot("In-memory publish → handler latency (mode="+mode+", 1 handler)", "percentile", "µs (log)")
	p.Y.Scale = plot.LogScale{}
	p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	names := make([]string, len(percentiles))
	for i, q := range percentiles {
		names[i] = q.label
	}
	p.NominalX(names...)
	lines, top := 0, 0.0
	for _, impl := range impls {
		s := res.find("MemoryLatency", "mode", mode, "impl", impl)
		var pts plotter.XYs
		for i, q := range percentiles {
			if st := s.stat(q.unit); st.ok && st.median > 0 {
				pts = append(pts, plotter.XY{X: float64(i), Y: st.median})
				top = max(top, st.median)
			}
		}
		if len(pts) == 0 {
			continue
		}
		if err := addLine(p, impl, pts); err != nil {
			return nil, err
		}
		lines++
	}
	if lines == 0 {
		return nil, nil
	}
	p.X.Min, p.X.Max = -0.3, float64(len(percentiles)-1)+0.3
	p.Y.Max = top * 8 // room for the legend (log scale)
	return p, nil
}

// e2eChart draws grouped bars: events/s per implementation, per handler count.
func e2eChart(res *results, srv string, impls []string) (*plot.Plot, error) {
	handlers := res.values("NATSEndToEnd", "handlers", "server", srv)
	if len(handlers) == 0 {
		return nil, nil
	}
	p := newPlot("NATS JetStream end-to-end ("+srv+" server)", "handlers (durable consumers, each gets every event)", "events/s")
	w := vg.Points(18)
	top := 0.0
	for i, impl := range impls {
		vals := make(plotter.Values, len(handlers))
		for j, h := range handlers {
			st := res.find("NATSEndToEnd", "server", srv, "impl", impl, "handlers", h).stat("events/s")
			if st.ok {
				vals[j] = st.median
				top = max(top, st.median)
			}
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		st := implStyle[impl]
		bars.Color = st.color
		bars.LineStyle.Width = 0
		bars.Offset = w * vg.Length(i-len(impls)/2)
		p.Add(bars)
		p.Legend.Add(label(impl), bars)
	}
	names := make([]string, len(handlers))
	for j, h := range handlers {
		names[j] = h + " handler(s)"
	}
	p.NominalX(names...)
	p.X.Min, p.X.Max = -0.7, float64(len(handlers)-1)+0.7
	p.Y.Min, p.Y.Max = 0, top*1.4 // room for the legend
	return p, nil
}
