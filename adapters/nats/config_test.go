package nats_test

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/transport"
)

// Every numeric Config field has a documented range: New accepts its bounds
// and refuses, with an error wrapping transport.ErrInvalidOption, anything outside it,
// up to the largest values of its type (which used to pass New and then panic
// a goroutine, or fail with another error).
func TestConfigBounds(t *testing.T) {
	srv := natstest.New(t)
	nc := connect(t, srv.URL())
	type field struct {
		name string
		ok   []int64 // accepted values
		bad  []int64 // refused values
	}
	const ms, day = int64(time.Millisecond), int64(24 * time.Hour)
	const year = 365 * day
	// dur is a duration field whose non-zero values go from lo to hi.
	dur := func(name string, lo, hi int64) field {
		bad := []int64{-1, hi + 1, math.MaxInt64, math.MinInt64}
		if lo > 1 {
			bad = append(bad, 1, lo-1)
		}
		return field{name, []int64{0, lo, hi}, bad}
	}
	count := func(name string, max int64) field {
		return field{name, []int64{0, 1, max}, []int64{-1, max + 1, math.MaxInt32, math.MaxInt, math.MinInt}}
	}
	fields := []field{
		dur("ConnectTimeout", ms, int64(time.Minute)),
		dur("RequestTimeout", ms, int64(10*time.Minute)),
		{"MaxAge", []int64{0, 100 * ms, 10 * year, -1, math.MinInt64}, []int64{1, 100*ms - 1, 10*year + 1, math.MaxInt64}},
		dur("PoisonMaxAge", 100*ms, 10*year),
		dur("DuplicateWindow", 100*ms, day),
		dur("AckWait", 30*ms, day),
		dur("NakDelay", 1, day),
		dur("MaxNakDelay", 1, day),
		dur("PubAckTimeout", ms, int64(10*time.Minute)),
		count("Replicas", 5),
		{"MaxDeliver", []int64{0, -1, 1, 1_000_000}, []int64{-2, 1_000_001, math.MaxInt32, math.MaxInt, math.MinInt}},
		count("MaxAckPending", 1_000_000),
		count("Prefetch", 10_000),
		count("MaxPayload", 64<<20),
		count("MaxPendingPublishes", 1_000_000),
		{"Partitions", []int64{0, -1, 1, nats.MaxPartitions}, []int64{-2, nats.MaxPartitions + 1, math.MaxInt32, math.MaxInt, math.MinInt}},
		{"Storage", []int64{int64(jetstream.FileStorage), int64(jetstream.MemoryStorage)}, []int64{-1, 2, math.MaxInt, math.MinInt}},
		{"Retention", []int64{int64(nats.RetentionInterest), int64(nats.RetentionLimits)}, []int64{-1, 2, math.MaxInt, math.MinInt}},
	}

	// The table covers every numeric field of Config.
	covered := map[string]bool{}
	for _, f := range fields {
		covered[f.name] = true
	}
	ct := reflect.TypeFor[nats.Config]()
	for i := range ct.NumField() {
		sf := ct.Field(i)
		switch sf.Type.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
			if !covered[sf.Name] {
				t.Errorf("Config.%s (%s) is not in the table", sf.Name, sf.Type)
			}
		}
	}

	set := func(c *nats.Config, name string, v int64) {
		fv := reflect.ValueOf(c).Elem().FieldByName(name)
		if !fv.IsValid() {
			t.Fatalf("no field Config.%s", name)
		}
		fv.SetInt(v)
	}
	for _, f := range fields {
		t.Run(f.name, func(t *testing.T) {
			for _, v := range f.ok {
				c := nats.Config{Conn: nc}
				set(&c, f.name, v)
				tr, err := nats.New(c)
				if err != nil {
					t.Errorf("%s = %d refused: %v", f.name, v, err)
					continue
				}
				_ = tr.Close() // may time out with a 1ms RequestTimeout
			}
			for _, v := range f.bad {
				c := nats.Config{Conn: nc}
				set(&c, f.name, v)
				tr, err := nats.New(c)
				if !errors.Is(err, transport.ErrInvalidOption) {
					t.Errorf("%s = %d: got %v, want an error wrapping transport.ErrInvalidOption", f.name, v, err)
				}
				if tr != nil {
					_ = tr.Close()
				}
			}
		})
	}
}

// The events stream a transport creates has the retention and MaxAge its
// Config asks for: limits with a week by default, interest with no age limit,
// and no age limit for a negative MaxAge.
func TestRetentionDefaults(t *testing.T) {
	srv := natstest.New(t)
	for i, tc := range []struct {
		name      string
		edit      func(*nats.Config)
		retention jetstream.RetentionPolicy
		maxAge    time.Duration
	}{
		{"default", func(*nats.Config) {}, jetstream.LimitsPolicy, nats.DefaultMaxAge},
		{"limits, an hour", func(c *nats.Config) { c.MaxAge = time.Hour }, jetstream.LimitsPolicy, time.Hour},
		{"limits, no age limit", func(c *nats.Config) { c.MaxAge = -1 }, jetstream.LimitsPolicy, 0},
		{"interest", func(c *nats.Config) { c.Retention = nats.RetentionInterest }, jetstream.InterestPolicy, 0},
		{"interest, an hour", func(c *nats.Config) { c.Retention = nats.RetentionInterest; c.MaxAge = time.Hour }, jetstream.InterestPolicy, time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := broker{url: srv.URL(), stream: fmt.Sprintf("RET%d", i), prefix: fmt.Sprintf("ret%d", i)}
			tr := b.transport(t, tc.edit)
			if err := tr.Start(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			s, err := tr.JetStream().Stream(testCtx(t), b.stream)
			if err != nil {
				t.Fatal(err)
			}
			got := s.CachedInfo().Config
			if got.Retention != tc.retention || got.MaxAge != tc.maxAge {
				t.Errorf("stream retention %v, MaxAge %v; want %v, %v", got.Retention, got.MaxAge, tc.retention, tc.maxAge)
			}
			if got.Duplicates != nats.DefaultDuplicateWindow {
				t.Errorf("duplicate window %v, want %v", got.Duplicates, nats.DefaultDuplicateWindow)
			}
		})
	}
}
