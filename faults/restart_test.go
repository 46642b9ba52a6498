package faults_test

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	hnats "github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/bustest"
)

// publisher publishes events with fixed message IDs and, when Publish
// returns an error, publishes again with the same ID until it returns nil,
// as an application that wants its event out would. It counts the errors.
type publisher struct {
	b       *bus.Bus
	id      func(seq int) string
	timeout time.Duration // of one Publish
	workers int

	errs  atomic.Int64
	mu    sync.Mutex
	kinds map[string]int
	ok    map[int]bool // seqs whose Publish returned nil
}

func newPublisher(b *bus.Bus, prefix string) *publisher {
	return &publisher{b: b, id: func(seq int) string { return fmt.Sprintf("%s-%05d", prefix, seq) },
		timeout: 2 * time.Second, workers: 8, kinds: map[string]int{}, ok: map[int]bool{}}
}

var digits = regexp.MustCompile(`[0-9a-v]{28}|[A-Za-z]+-[0-9]{5}|[0-9]+(\.[0-9]+)?(ms|s|µs)?`)

// publish publishes seq until Publish returns nil or until gives up; it
// reports whether the event is out.
func (p *publisher) publish(seq int, until time.Time) bool {
	backoff := 10 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
		err := bus.Publish(ctx, p.b, Event{Seq: seq}, bus.WithMessageID(p.id(seq)))
		cancel()
		if err == nil {
			p.mu.Lock()
			p.ok[seq] = true
			p.mu.Unlock()
			return true
		}
		p.errs.Add(1)
		p.mu.Lock()
		p.kinds[digits.ReplaceAllString(err.Error(), "N")]++
		p.mu.Unlock()
		if errors.Is(err, bus.ErrClosed) || time.Now().After(until) {
			return false
		}
		time.Sleep(backoff) // the application's retry backoff, not synchronisation
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// run publishes seqs [from, to) on p.workers goroutines and returns the seqs
// it gave up on.
func (p *publisher) run(from, to int, until time.Time) []int {
	work := make(chan int)
	var mu sync.Mutex
	var failed []int
	var wg sync.WaitGroup
	for range p.workers {
		wg.Go(func() {
			for seq := range work {
				if !p.publish(seq, until) {
					mu.Lock()
					failed = append(failed, seq)
					mu.Unlock()
				}
			}
		})
	}
	for i := from; i < to; i++ {
		work <- i
	}
	close(work)
	wg.Wait()
	sort.Ints(failed)
	return failed
}

// published returns the seqs whose Publish returned nil.
func (p *publisher) published() map[int]bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[int]bool, len(p.ok))
	for k := range p.ok {
		out[k] = true
	}
	return out
}

// errorSummary is the distinct errors (numbers and IDs masked), most
// frequent first, at most 4.
func (p *publisher) errorSummary() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	type kv struct {
		k string
		n int
	}
	var all []kv
	for k, n := range p.kinds {
		all = append(all, kv{k, n})
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	var parts []string
	for _, e := range all[:min(4, len(all))] {
		parts = append(parts, fmt.Sprintf("%d× %s", e.n, e.k))
	}
	return strings.Join(parts, " | ")
}

// firstAfter records, per handler, the time of its first success after a
// moment set by the test (the fault's end).
type firstAfter struct {
	since atomic.Int64 // unix nanos; 0: not set yet
	first []atomic.Int64
}

func newFirstAfter(n int) *firstAfter { return &firstAfter{first: make([]atomic.Int64, n)} }

func (f *firstAfter) mark(i int) {
	if s := f.since.Load(); s != 0 {
		now := time.Now().UnixNano()
		if now >= s {
			f.first[i].CompareAndSwap(0, now)
		}
	}
}

// latest returns the latest first success after since, over every handler,
// as a duration from origin.
func (f *firstAfter) latest(origin time.Time) time.Duration {
	var last int64
	for i := range f.first {
		last = max(last, f.first[i].Load())
	}
	if last == 0 {
		return -1
	}
	return time.Unix(0, last).Sub(origin)
}

// Fault 1: the nats-server restarts (same port, same store directory)
// after 5k of 10k events published to 3 handlers. The publisher keeps
// publishing through the outage; a Publish that fails returns its error and
// is retried with the same message ID. Every handler ends with every event
// ID, and nothing is poisoned. Twice:
//
//   - limits retention, so that the stream keeps what it stored: it holds
//     each event once (retries with the same ID were dropped as duplicates);
//   - interest retention (the transport's default): the stream ends empty,
//     every event acknowledged by every handler.
func TestServerRestartMidStream(t *testing.T) {
	eachRetention(t, serverRestart)
}

func serverRestart(t *testing.T, retention hnats.Retention) {
	be := natsBackend(t, func(c *hnats.Config) { c.Retention = retention })
	var msgs uint64
	restartDuring(t, be.bus(t), "1-server-restart", "server", func() {
		if err := be.srv.Restart(); err != nil {
			t.Fatalf("restart: %v", err)
		}
	}, func(f *figures) {
		if retention == hnats.RetentionLimits {
			f.transport = "nats-limits"
		} else {
			f.transport = "nats-interest"
			bustest.Eventually(t, wait, func() bool { return be.streamMsgs(t) == 0 }, "every event acknowledged by every handler")
		}
		msgs = be.streamMsgs(t)
		f.add("stream_msgs", msgs)
	})
	if retention == hnats.RetentionLimits && msgs != restartEvents {
		t.Errorf("the stream holds %d messages, want %d: publishing again with the same message ID stored a duplicate", msgs, restartEvents)
	}
}
