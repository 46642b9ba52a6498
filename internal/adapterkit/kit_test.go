package adapterkit_test

import (
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldbus/herald/internal/adapterkit"
	"github.com/heraldbus/herald/transport"
)

func TestFillSetsDefaultsAndRefusesOutOfRange(t *testing.T) {
	var wait time.Duration
	size := 7
	if err := adapterkit.Fill("x", adapterkit.Field("Wait", &wait, time.Second, time.Millisecond, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := adapterkit.Fill("x", adapterkit.Field("Size", &size, 3, 1, 10)); err != nil {
		t.Fatal(err)
	}
	if wait != time.Second || size != 7 {
		t.Fatalf("wait %v (want the default 1s), size %d (want 7, in range)", wait, size)
	}
	for v, want := range map[int]string{
		-1: "herald/x: herald: invalid option: Size -1 < 0",
		11: "herald/x: herald: invalid option: Size 11 > 10",
		1:  "herald/x: herald: invalid option: Size 1 < 2",
	} {
		got := v
		err := adapterkit.Fill("x", adapterkit.Field("Size", &got, 5, 2, 10))
		if !errors.Is(err, transport.ErrInvalidOption) || err.Error() != want {
			t.Errorf("Size %d: %v, want %q wrapping ErrInvalidOption", v, err, want)
		}
		if got != v {
			t.Errorf("Size %d was changed to %d", v, got)
		}
	}
	// The first bad field stops the fill: the ones after it keep their zero.
	a, b := -time.Second, time.Duration(0)
	err := adapterkit.Fill("x", adapterkit.Field("A", &a, 1, 0, time.Hour), adapterkit.Field("B", &b, 2, 0, time.Hour))
	if err == nil || !strings.Contains(err.Error(), "A -1s < 0") || b != 0 {
		t.Fatalf("err %v, B %v: want A's error and B untouched", err, b)
	}
}

func TestInvalidWrapsTheOptionErrorAndItsCause(t *testing.T) {
	cause := errors.New("bad subject")
	err := adapterkit.Invalid("nats", "SubjectPrefix: %w", cause)
	if !errors.Is(err, transport.ErrInvalidOption) || !errors.Is(err, cause) {
		t.Fatalf("%v wraps neither ErrInvalidOption nor its cause", err)
	}
	if want := "herald/nats: herald: invalid option: SubjectPrefix: bad subject"; err.Error() != want {
		t.Fatalf("%q, want %q", err, want)
	}
}

func TestSqueezeKeepsDistinctNamesDistinct(t *testing.T) {
	lower := func(c byte) bool { return c >= 'a' && c <= 'z' || c == '-' }
	a, b := adapterkit.Squeeze("a.b", 40, lower, '-'), adapterkit.Squeeze("a_b", 40, lower, '-')
	if a != "a_b-"+adapterkit.Hash("a.b") || a == b {
		t.Fatalf("a.b → %q, a_b → %q", a, b)
	}
	long := strings.Repeat("x", 100)
	got := adapterkit.Squeeze(long, 20, lower, '-')
	if got != strings.Repeat("x", 20)+"-"+adapterkit.Hash(long) {
		t.Fatalf("cut to 20: %q", got)
	}
	if got == adapterkit.Squeeze(long+"y", 20, lower, '-') {
		t.Fatal("names cut alike must differ by their hash")
	}
}

func TestHashIsTwelveStableHexDigits(t *testing.T) {
	h := adapterkit.Hash("orders.placed")
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(h) || h != adapterkit.Hash("orders.placed") || h == adapterkit.Hash("orders.placed2") {
		t.Fatalf("Hash: %q", h)
	}
}

func TestIsClosed(t *testing.T) {
	done := make(chan struct{})
	if adapterkit.IsClosed(done) {
		t.Fatal("open channel reported closed")
	}
	close(done)
	if !adapterkit.IsClosed(done) {
		t.Fatal("closed channel reported open")
	}
}

// member removes itself from its set under the set's lock when closed, as
// the adapters' subscribers do.
type member struct {
	mu     *sync.Mutex
	set    map[*member]struct{}
	closed int
}

func (m *member) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed++
	delete(m.set, m)
	return nil
}

func TestCloseAllClosesEachMemberOutsideTheLock(t *testing.T) {
	var mu sync.Mutex
	set := map[*member]struct{}{}
	var ms []*member
	for range 3 {
		m := &member{mu: &mu, set: set}
		set[m] = struct{}{}
		ms = append(ms, m)
	}
	adapterkit.CloseAll(&mu, set) // would deadlock if it held mu while closing
	if len(set) != 0 {
		t.Fatalf("%d members left", len(set))
	}
	for _, m := range ms {
		if m.closed != 1 {
			t.Fatalf("a member closed %d times", m.closed)
		}
	}
}

func TestPoisonPage(t *testing.T) {
	after, limit, err := adapterkit.PoisonPage("x", transport.PoisonQuery{})
	if err != nil || after != -1 || limit != adapterkit.DefaultPoisonPage {
		t.Fatalf("no cursor: %d, %d, %v", after, limit, err)
	}
	after, limit, err = adapterkit.PoisonPage("x", transport.PoisonQuery{After: "42", Limit: 5000})
	if err != nil || after != 42 || limit != adapterkit.MaxPoisonPage {
		t.Fatalf("cursor 42, limit 5000: %d, %d, %v", after, limit, err)
	}
	for _, bad := range []string{"-1", "x", "1.5"} {
		_, _, err := adapterkit.PoisonPage("x", transport.PoisonQuery{After: bad})
		if !errors.Is(err, transport.ErrInvalidOption) || !strings.Contains(err.Error(), fmt.Sprintf("poison cursor %q", bad)) {
			t.Errorf("cursor %q: %v", bad, err)
		}
	}
}

func TestEncodeDecodePoisonKeepsThePayloadAsItIs(t *testing.T) {
	rec := transport.PoisonRecord{ID: "r1", Handler: "h", Error: "boom\nline two",
		Event: transport.Event{Name: "e"}, Payload: []byte("{\"a\":1}\n\x00raw")}
	body, err := adapterkit.EncodePoison(rec)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(body), "}\n{\"a\":1}\n\x00raw") {
		t.Fatalf("the payload does not follow the JSON unencoded: %q", body)
	}
	got, err := adapterkit.DecodePoison(body)
	if err != nil || got.ID != rec.ID || got.Error != rec.Error || string(got.Payload) != string(rec.Payload) {
		t.Fatalf("decoded %+v, %v", got, err)
	}
	if _, err := adapterkit.DecodePoison([]byte(`{"ID":"r1"}`)); err == nil || !strings.Contains(err.Error(), "no line feed") {
		t.Fatalf("body without a line feed: %v", err)
	}
}

func values[V any](page []adapterkit.PoisonEntry[V]) []V {
	var out []V
	for _, e := range page {
		out = append(out, e.Value)
	}
	return out
}

func TestPoisonIndexPutReplaceDeleteAndPage(t *testing.T) {
	var x adapterkit.PoisonIndex[string]
	put := func(id string, off int64, handler string) {
		x.Put(id, adapterkit.PoisonEntry[string]{Offset: off, Handler: handler, Event: "e", Value: id})
	}
	put("a", 1, "h1")
	put("b", 2, "h2")
	put("c", 3, "h1")
	put("a", 4, "h1") // replaces a: it moves to offset 4
	if x.Len() != 3 {
		t.Fatalf("Len %d, want 3", x.Len())
	}
	page, more := x.Page(transport.PoisonQuery{}, -1, 2)
	if got := values(page); !slices.Equal(got, []string{"b", "c"}) || !more {
		t.Fatalf("first page %v, more %v", got, more)
	}
	page, more = x.Page(transport.PoisonQuery{}, page[1].Offset, 2)
	if got := values(page); !slices.Equal(got, []string{"a"}) || more {
		t.Fatalf("second page %v, more %v", got, more)
	}
	if got, _ := x.Page(transport.PoisonQuery{Handler: "h1"}, -1, 10); !slices.Equal(values(got), []string{"c", "a"}) {
		t.Fatalf("handler h1: %v", values(got))
	}
	if got, _ := x.Page(transport.PoisonQuery{Event: "other"}, -1, 10); len(got) != 0 {
		t.Fatalf("event other: %v", values(got))
	}
	if !x.Delete("c") || x.Delete("c") {
		t.Fatal("Delete must find c once")
	}
	if _, ok := x.Get("c"); ok {
		t.Fatal("c still there")
	}
	if e, ok := x.Get("a"); !ok || e.Offset != 4 {
		t.Fatalf("a: %+v, %v", e, ok)
	}
}

func TestPoisonIndexStaysCorrectThroughCompaction(t *testing.T) {
	var x adapterkit.PoisonIndex[int]
	const n = 5000
	for i := range n {
		x.Put(fmt.Sprint(i), adapterkit.PoisonEntry[int]{Offset: int64(i), Value: i})
	}
	for i := range n {
		if i%10 != 0 && !x.Delete(fmt.Sprint(i)) {
			t.Fatalf("%d not found", i)
		}
	}
	var got []int
	for after := int64(-1); ; {
		page, more := x.Page(transport.PoisonQuery{}, after, 64)
		got = append(got, values(page)...)
		if !more {
			break
		}
		after = page[len(page)-1].Offset
	}
	if x.Len() != n/10 || len(got) != n/10 {
		t.Fatalf("Len %d, paged %d, want %d", x.Len(), len(got), n/10)
	}
	for i, v := range got {
		if v != i*10 {
			t.Fatalf("page item %d is %d, want %d", i, v, i*10)
		}
	}
}

func TestPreparedRetriesUntilASuccessAndAgainAfterReset(t *testing.T) {
	var p adapterkit.Prepared
	done := make(chan struct{})
	runs := 0
	fail := errors.New("broker away")
	prepare := func(err error) func() error {
		return func() error { runs++; return err }
	}
	if err := p.Do(done, prepare(fail)); !errors.Is(err, fail) {
		t.Fatalf("failed run: %v", err)
	}
	if err := p.Do(done, prepare(nil)); err != nil || runs != 2 {
		t.Fatalf("a failed run is retried: %v after %d runs", err, runs)
	}
	if err := p.Do(done, prepare(fail)); err != nil || runs != 2 {
		t.Fatalf("after a success no run: %v after %d runs", err, runs)
	}
	if !p.Reset() || p.Reset() {
		t.Fatal("one Reset undoes the success")
	}
	if err := p.Do(done, prepare(nil)); err != nil || runs != 3 {
		t.Fatalf("after Reset a run: %v after %d runs", err, runs)
	}
	close(done)
	if err := p.Do(done, prepare(nil)); !errors.Is(err, transport.ErrClosed) || runs != 3 {
		t.Fatalf("after close: %v after %d runs", err, runs)
	}
}

func TestPreparedRunsOneAtATime(t *testing.T) {
	var p adapterkit.Prepared
	done := make(chan struct{})
	var running, runs int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			_ = p.Do(done, func() error {
				mu.Lock()
				running++
				runs++
				overlap := running > 1
				mu.Unlock()
				mu.Lock()
				running--
				mu.Unlock()
				if overlap {
					t.Error("two runs at once")
				}
				return nil
			})
		})
	}
	wg.Wait()
	if runs != 1 {
		t.Fatalf("%d runs, want 1", runs)
	}
}
