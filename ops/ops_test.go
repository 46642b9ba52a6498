package ops_test

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/ops"
	"github.com/heraldbus/herald/transport"
)

func TestOptionsValidate(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		b    *bus.Bus
		opt  ops.Option
	}{
		{"nil bus", nil, ops.ReadOnly()},
		{"nil option", b, nil},
		{"page size 0", b, ops.WithPageSize(0)},
		{"page size too big", b, ops.WithPageSize(1001)},
		{"refresh too short", b, ops.WithRefresh(time.Millisecond)},
		{"refresh too long", b, ops.WithRefresh(2 * time.Hour)},
		{"empty title", b, ops.WithTitle("")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := ops.Handler(tc.b, tc.opt)
			if !errors.Is(err, transport.ErrInvalidOption) || h != nil {
				t.Fatalf("got %v, %v; want an error wrapping ErrInvalidOption", h, err)
			}
			if !strings.HasPrefix(err.Error(), "herald/ops: ") {
				t.Fatalf("error without the package prefix: %v", err)
			}
		})
	}
}

func TestPages(t *testing.T) {
	s := newShop(t, 3)
	srv := serve(t, s.b, ops.WithPageSize(2), ops.WithTitle("Shop"))
	base := srv.URL + "/ops"

	t.Run("mount without trailing slash redirects", func(t *testing.T) {
		resp, err := noRedirect.Get(base)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/ops/" {
			t.Fatalf("GET /ops: %d to %q, want 301 to /ops/", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("handlers", func(t *testing.T) {
		waitFor(t, "archive's backlog", func() bool { return s.stat(t, "archive").Backlog == 3 })
		code, body := get(t, base+"/")
		for _, want := range []string{"<title>Shop", `data-handler="archive"`, `data-handler="welcome"`, `data-k="backlog">3<`, "no login of its own", `href="static/ops.css"`, `href="poison?handler=welcome"`} {
			if !strings.Contains(body, want) {
				t.Errorf("handlers page (%d) lacks %q", code, want)
			}
		}
		if strings.Contains(body, "<script>alert") || !strings.Contains(body, "smtp refused &lt;script&gt;") {
			t.Error("the last error's markup is not escaped")
		}
		if strings.Contains(body, "//cdn") || strings.Contains(body, "https://") {
			t.Error("the page loads something from elsewhere")
		}
	})
	t.Run("static assets are embedded", func(t *testing.T) {
		for _, p := range []string{"/static/ops.css", "/static/ops.js"} {
			if code, body := get(t, base+p); code != http.StatusOK || len(body) < 100 {
				t.Errorf("%s: %d, %d bytes", p, code, len(body))
			}
		}
	})
	t.Run("stats.json", func(t *testing.T) {
		_, body := get(t, base+"/stats.json")
		var st struct {
			Handlers []struct {
				Handler  string `json:"handler"`
				Backlog  int64  `json:"backlog"`
				Poisoned uint64 `json:"poisoned"`
			} `json:"handlers"`
		}
		if err := json.Unmarshal([]byte(body), &st); err != nil {
			t.Fatal(err)
		}
		if len(st.Handlers) != 2 || st.Handlers[0].Handler != "archive" || st.Handlers[0].Backlog != 3 || st.Handlers[1].Poisoned != 3 {
			t.Fatalf("stats.json: %s", body)
		}
	})
	t.Run("poison records page and filter", func(t *testing.T) {
		yes := true
		for _, tc := range []struct {
			query      string
			want, not  []string
			nextExists *bool // nil: either (a store may return a cursor with a short page)
		}{
			{"", []string{s.records[0], s.records[1]}, []string{s.records[2]}, &yes},
			{"?handler=welcome&event=users.Signup", []string{s.records[0]}, nil, &yes},
			{"?handler=archive", []string{`id="empty"`}, []string{s.records[0]}, nil},
			{"?event=orders.Placed", []string{`id="empty"`}, nil, nil},
		} {
			t.Run(tc.query, func(t *testing.T) {
				code, body := get(t, base+"/poison"+tc.query)
				if code != http.StatusOK {
					t.Fatalf("status %d", code)
				}
				for _, w := range tc.want {
					if !strings.Contains(body, w) {
						t.Errorf("lacks %q", w)
					}
				}
				for _, w := range tc.not {
					if strings.Contains(body, w) {
						t.Errorf("holds %q", w)
					}
				}
				if got := strings.Contains(body, `id="next"`); tc.nextExists != nil && got != *tc.nextExists {
					t.Errorf("next page link: %v, want %v", got, *tc.nextExists)
				}
			})
		}
	})
	t.Run("paging", func(t *testing.T) {
		_, body := get(t, base+"/poison?handler=welcome")
		i := strings.Index(body, `<a href="poison?`)
		j := strings.Index(body[i+9:], `"`)
		if i < 0 || j < 0 {
			t.Fatal("no next link")
		}
		next := strings.ReplaceAll(body[i+9:i+9+j], "&amp;", "&")
		_, page2 := get(t, base+"/"+next)
		if !strings.Contains(page2, s.records[2]) || strings.Contains(page2, s.records[0]) || strings.Contains(page2, `id="next"`) {
			t.Fatalf("second page (%s) is not the third record alone", next)
		}
	})
	t.Run("record", func(t *testing.T) {
		code, body := get(t, base+"/record?id="+url.QueryEscape(s.records[0]))
		for _, want := range []string{
			"&#34;email&#34;: &#34;a@example.com&#34;", // pretty-printed, escaped
			"alert(&#39;payload&#39;)",                 // the JSON codec escapes < and > as \u003c, \u003e
			"smtp refused &lt;script&gt;",
			`href="confirm?action=replay&amp;id=` + s.records[0],
			"Herald-Event",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("record page (%d) lacks %q", code, want)
			}
		}
		if strings.Contains(body, "<script>alert") {
			t.Error("a payload or error renders as markup")
		}
	})
	t.Run("unknown record", func(t *testing.T) {
		if code, body := get(t, base+"/record?id=nope"); code != http.StatusNotFound || !strings.Contains(body, "no poison record") {
			t.Fatalf("%d %s", code, body)
		}
	})
}

func TestReplayAndPurge(t *testing.T) {
	s := newShop(t, 3)
	srv := serve(t, s.b)
	base := srv.URL + "/ops"
	tok := token(t, srv.URL, s.records[0])
	post := func(t *testing.T, path string, form url.Values, header http.Header) (int, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, base+path, strings.NewReader(form.Encode()))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		for k, v := range header {
			req.Header[k] = v
		}
		resp, err := noRedirect.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("Location")
	}

	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			form   url.Values
			header http.Header
		}{
			{"no token", url.Values{"id": {s.records[0]}}, nil},
			{"wrong token", url.Values{"id": {s.records[0]}, "token": {"00"}}, nil},
			{"cross-site", url.Values{"id": {s.records[0]}, "token": {tok}}, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
			{"other origin", url.Values{"id": {s.records[0]}, "token": {tok}}, http.Header{"Origin": {"https://evil.example"}}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				if code, _ := post(t, "/replay", tc.form, tc.header); code != http.StatusForbidden {
					t.Fatalf("status %d, want 403", code)
				}
				if code, _ := post(t, "/purge", tc.form, tc.header); code != http.StatusForbidden {
					t.Fatalf("purge: status %d, want 403", code)
				}
			})
		}
		if n := len(s.waitRecords(t, 3)); n != 3 {
			t.Fatalf("a refused request changed the records: %d", n)
		}
	})
	t.Run("GET cannot replay", func(t *testing.T) {
		if code, _ := get(t, base+"/replay?id="+s.records[0]+"&token="+tok); code != http.StatusMethodNotAllowed {
			t.Fatalf("GET /replay: %d", code)
		}
	})
	t.Run("replay one", func(t *testing.T) {
		s.broken.Store(false)
		before := s.stat(t, "welcome").Handled
		same := http.Header{"Origin": {srv.URL}, "Sec-Fetch-Site": {"same-origin"}}
		code, loc := post(t, "/replay", url.Values{"id": {s.records[0]}, "token": {tok}, "handler": {"welcome"}}, same)
		if code != http.StatusSeeOther || !strings.HasPrefix(loc, "poison?") {
			t.Fatalf("replay: %d to %q", code, loc)
		}
		waitFor(t, "welcome to handle the replay", func() bool { return s.stat(t, "welcome").Handled == before+1 })
		if left := s.waitRecords(t, 2); left[0] != s.records[1] {
			t.Fatalf("records left: %v", left)
		}
		_, body := get(t, base+"/"+loc)
		if !strings.Contains(body, "replayed record "+s.records[0]) {
			t.Error("the records page does not say what was done")
		}
	})
	t.Run("replay unknown", func(t *testing.T) {
		if code, _ := post(t, "/replay", url.Values{"id": {s.records[0]}, "token": {tok}}, nil); code != http.StatusNotFound {
			t.Fatalf("replay of a replayed record: %d, want 404", code)
		}
	})
	t.Run("purge one, then all of a handler", func(t *testing.T) {
		if code, _ := post(t, "/purge", url.Values{"id": {s.records[1]}, "token": {tok}}, nil); code != http.StatusSeeOther {
			t.Fatalf("purge: %d", code)
		}
		s.waitRecords(t, 1)
		if code, loc := post(t, "/purge", url.Values{"handler": {"welcome"}, "token": {tok}}, nil); code != http.StatusSeeOther || !strings.Contains(loc, "purged+1+records") {
			t.Fatalf("purge all: %d %q", code, loc)
		}
		s.waitRecords(t, 0)
	})
}

func TestReadOnlyAndHiddenPayloads(t *testing.T) {
	s := newShop(t, 1)
	srv := serve(t, s.b, ops.ReadOnly(), ops.HidePayloads())
	base := srv.URL + "/ops"
	code, body := get(t, base+"/record?id="+s.records[0])
	if code != http.StatusOK {
		t.Fatalf("record: %d", code)
	}
	if strings.Contains(body, "&#34;email&#34;") || strings.Contains(body, "alert(&#39;payload") || !strings.Contains(body, "bytes, hidden") {
		t.Error("the payload is shown")
	}
	if strings.Contains(body, `id="replay"`) || strings.Contains(body, `id="purge"`) || !strings.Contains(body, "read-only") {
		t.Error("a read-only page shows replay or purge")
	}
	if code, _ := get(t, base+"/confirm?action=purge&id="+s.records[0]); code != http.StatusForbidden {
		t.Errorf("confirm on a read-only page: %d", code)
	}
	resp, err := http.PostForm(base+"/purge", url.Values{"id": {s.records[0]}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("POST on a read-only page: %d", resp.StatusCode)
	}
	s.waitRecords(t, 1)
}
