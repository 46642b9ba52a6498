// Command report runs Herald's benchmark suite and writes BENCHMARKS.md and
// its charts.
//
// Run it from the benchmarks directory:
//
//	go run ./cmd/report                          # the full run: -count 6 -benchtime 1s
//	go run ./cmd/report -count 3 -benchtime 200ms # a quick one
//	go run ./cmd/report -in results.txt          # re-render saved output, run nothing
//
// It runs `go test -run '^$' -bench <bench> -benchmem -count <count>
// -benchtime <benchtime> .` in the current directory, saves the output
// (-raw, default results.txt), parses it with benchstat's libraries
// (golang.org/x/perf/benchfmt and benchmath: medians of the runs with 95%
// confidence intervals, Mann-Whitney U-tests for the ratios), and writes the
// report (-out, default ../BENCHMARKS.md) and PNG charts (-charts, default
// charts/). Before running, it waits (up to -wait, polling every 30s) for
// the 1-minute load average to drop to -maxload, and records the load in
// the report. The machine's NATS server is benchmarked too when NATS_URL is
// set or, unless -nats=false, when a server answers on 127.0.0.1:4222.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// runInfo is how the results were produced.
type runInfo struct {
	Report     string // the cmd/report command line
	Commit     string // the library's git commit (with "+dirty" for local changes)
	Command    string
	Count      int
	Benchtime  string
	Start      time.Time
	Duration   time.Duration
	LoadBefore float64
	LoadAfter  float64
	Machine    machine
	Rendered   bool // -in: rendered from saved output
	RawFile    string
}

func main() {
	count := flag.Int("count", 6, "runs of each benchmark (go test -count); 6 or more gives 95% confidence intervals")
	benchtime := flag.String("benchtime", "1s", "go test -benchtime of each run")
	bench := flag.String("bench", ".", "go test -bench regexp")
	timeout := flag.String("timeout", "120m", "go test -timeout")
	in := flag.String("in", "", "render this saved go test output instead of running the benchmarks")
	raw := flag.String("raw", "results.txt", "where to save the raw go test output")
	out := flag.String("out", "../BENCHMARKS.md", "the report to write")
	charts := flag.String("charts", "charts", "directory of the PNG charts")
	maxLoad := flag.Float64("maxload", 1.0, "wait for the 1-minute load average to drop to this before running")
	wait := flag.Duration("wait", 10*time.Minute, "how long to wait for the load to drop (0: do not wait)")
	useNATS := flag.Bool("nats", true, "benchmark the machine's NATS server too (NATS_URL, or one answering on 127.0.0.1:4222)")
	flag.Parse()

	if err := run(*count, *benchtime, *bench, *timeout, *in, *raw, *out, *charts, *maxLoad, *wait, *useNATS); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(count int, benchtime, bench, timeout, in, raw, out, charts string, maxLoad float64, wait time.Duration, useNATS bool) error {
	if count < 1 {
		return fmt.Errorf("-count %d < 1", count)
	}
	natsURL := ""
	if useNATS {
		natsURL = os.Getenv("NATS_URL")
		if natsURL == "" {
			natsURL = localNATS()
		}
	}
	info := runInfo{Count: count, Benchtime: benchtime, Machine: describeMachine(natsURL), RawFile: raw,
		Report: strings.TrimSpace("go run ./cmd/report " + shellJoin(os.Args[1:]))}
	args := []string{"test", "-run", "^$", "-bench", bench, "-benchmem",
		"-count", fmt.Sprint(count), "-benchtime", benchtime, "-timeout", timeout, "."}
	info.Command = "go " + shellJoin(args)
	if natsURL != "" {
		info.Command = "NATS_URL=" + natsURL + " " + info.Command
	}

	var output []byte
	if in != "" {
		b, err := os.ReadFile(in)
		if err != nil {
			return err
		}
		output = b
		info.Rendered = true
		info.RawFile = in
		if st, err := os.Stat(in); err == nil {
			info.Start = st.ModTime()
		}
		info.LoadBefore, info.LoadAfter = -1, -1
		readHeader(b, &info)
	} else {
		if wait > 0 {
			waitForLoad(maxLoad, wait)
		}
		info.LoadBefore = loadAvg()
		info.Start = time.Now()
		fmt.Fprintf(os.Stderr, "report: %s (load %.2f)\n", info.Command, info.LoadBefore)
		var buf bytes.Buffer
		info.Commit = gitCommit()
		fmt.Fprintf(&buf, "# report: %s\n# herald-commit: %s\n", info.Report, info.Commit)
		fmt.Fprintf(&buf, "# command: %s\n# count: %d\n# benchtime: %s\n# started: %s\n# load-before: %.2f\n",
			info.Command, count, benchtime, info.Start.UTC().Format(time.RFC3339), info.LoadBefore)
		cmd := exec.Command("go", args...)
		cmd.Env = os.Environ()
		if natsURL != "" {
			cmd.Env = append(cmd.Env, "NATS_URL="+natsURL)
		} else {
			cmd.Env = append(cmd.Env, "NATS_URL=")
		}
		cmd.Stdout = io.MultiWriter(&buf, os.Stdout)
		cmd.Stderr = io.MultiWriter(&buf, os.Stderr)
		err := cmd.Run()
		info.Duration = time.Since(info.Start).Round(time.Second)
		info.LoadAfter = loadAvg()
		fmt.Fprintf(&buf, "# duration: %v\n# load-after: %.2f\n", info.Duration, info.LoadAfter)
		output = buf.Bytes()
		if werr := os.WriteFile(raw, output, 0o644); werr != nil {
			return werr
		}
		if err != nil {
			return fmt.Errorf("go test: %w (output saved in %s)", err, raw)
		}
	}

	res, err := parse(bytes.NewReader(output), info.RawFile)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(charts, 0o755); err != nil {
		return err
	}
	chartFiles, err := writeCharts(res, charts)
	if err != nil {
		return err
	}
	// Both absolute: Rel cannot relate "charts" to ".." otherwise.
	absOut, err1 := filepath.Abs(filepath.Dir(out))
	absCharts, err2 := filepath.Abs(charts)
	rel, err := filepath.Rel(absOut, absCharts)
	if err1 != nil || err2 != nil {
		err = errors.Join(err1, err2)
	}
	if err != nil {
		rel = charts
	}
	var md bytes.Buffer
	writeReport(&md, res, info, filepath.ToSlash(rel), chartFiles)
	if err := os.WriteFile(out, md.Bytes(), 0o644); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "report: wrote %s and %d charts in %s\n", out, len(chartFiles), charts)
	return nil
}

// readHeader reads what run wrote at the top and bottom of a saved output.
func readHeader(b []byte, info *runInfo) {
	if c := headerLine(b, "# command: "); c != "" {
		info.Command = c
	}
	if c := headerLine(b, "# report: "); c != "" {
		info.Report = c
	}
	info.Commit = headerLine(b, "# herald-commit: ")
	if v, err := strconv.Atoi(headerLine(b, "# count: ")); err == nil {
		info.Count = v
	}
	if v := headerLine(b, "# benchtime: "); v != "" {
		info.Benchtime = v
	}
	if t, err := time.Parse(time.RFC3339, headerLine(b, "# started: ")); err == nil {
		info.Start = t
	}
	if d, err := time.ParseDuration(headerLine(b, "# duration: ")); err == nil {
		info.Duration = d
	}
	lb, err1 := strconv.ParseFloat(headerLine(b, "# load-before: "), 64)
	la, err2 := strconv.ParseFloat(headerLine(b, "# load-after: "), 64)
	if err1 == nil && err2 == nil {
		info.LoadBefore, info.LoadAfter = lb, la
		info.Rendered = false // the run's own record
	}
}

// gitCommit returns the repository's HEAD commit, "+dirty" when the work tree
// has changes (the benchmarks build the library from ../), or "unknown".
func gitCommit() string {
	out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--", "..").Output(); err == nil && len(bytes.TrimSpace(st)) > 0 {
		c += "+dirty"
	}
	return c
}

// headerLine returns the rest of the first line of b starting with prefix.
func headerLine(b []byte, prefix string) string {
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, prefix); ok {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// shellJoin quotes args for a POSIX shell where needed.
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " ^$*?[]|&;<>()'\"\\") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}
