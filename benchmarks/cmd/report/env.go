package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// machine describes where the benchmarks ran.
type machine struct {
	CPU        string
	Cores      int
	RAM        string
	OS         string
	Go         string
	NATSEmbed  string // nats-server version of the embedded server
	NATSURL    string // the machine's server, "" if none
	NATSServer string // its version
}

func describeMachine(natsURL string) machine {
	m := machine{
		CPU:       cpuModel(),
		Cores:     runtime.NumCPU(),
		RAM:       memTotal(),
		OS:        runtime.GOOS + "/" + runtime.GOARCH + " " + kernel(),
		Go:        goVersion(),
		NATSEmbed: "v" + server.VERSION,
		NATSURL:   natsURL,
	}
	if natsURL != "" {
		if nc, err := nats.Connect(natsURL, nats.Timeout(2*time.Second)); err == nil {
			m.NATSServer = "v" + nc.ConnectedServerVersion()
			nc.Close()
		} else {
			m.NATSServer = "unreachable: " + err.Error()
		}
	}
	return m
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown"
}

func memTotal() string {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err == nil {
				return fmt.Sprintf("%.1f GiB", kb/(1<<20))
			}
		}
	}
	return "unknown"
}

func kernel() string {
	b, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return ""
	}
	return "(Linux " + strings.TrimSpace(string(b)) + ")"
}

// goVersion is the version of the go command that runs the benchmarks.
func goVersion() string {
	out, err := exec.Command("go", "env", "GOVERSION").Output()
	if err != nil {
		return runtime.Version()
	}
	return strings.TrimSpace(string(out))
}

// loadAvg returns the 1-minute load average, or -1.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// waitForLoad polls the 1-minute load average every 30s until it is at most
// max, for up to d. It returns the load it ended with.
func waitForLoad(maxLoad float64, d time.Duration) float64 {
	deadline := time.Now().Add(d)
	for {
		l := loadAvg()
		if l <= maxLoad || l < 0 {
			return l
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(os.Stderr, "report: load %.2f still above %.2f after %v; running anyway\n", l, maxLoad, d)
			return l
		}
		fmt.Fprintf(os.Stderr, "report: load %.2f > %.2f; waiting 30s\n", l, maxLoad)
		time.Sleep(30 * time.Second)
	}
}

// localNATS returns the URL of a NATS server answering on 127.0.0.1:4222,
// or "".
func localNATS() string {
	c, err := net.DialTimeout("tcp", "127.0.0.1:4222", time.Second)
	if err != nil {
		return ""
	}
	_ = c.Close()
	return "nats://127.0.0.1:4222"
}
