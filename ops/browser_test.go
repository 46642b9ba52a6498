package ops_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldbus/herald/internal/testenv"
	"github.com/heraldbus/herald/ops"
)

// chromium returns the path of Debian's chromium, or fails (CI=true) or skips
// the test when there is none.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testenv.Missing(t, "no chromium on PATH: install it with `apt-get install -y chromium` (.ci/run does)")
	return ""
}

// TestBrowser drives the page in headless Chromium: the handlers page shows a
// backlog; a poisoned record opens; replay asks for confirmation; once
// confirmed, the record is gone from the list and welcome's handled count
// rises on the handlers page, refreshed by its script. With
// HERALD_UPDATE_SCREENSHOT=1 it saves the handlers page to docs/ops.png.
func TestBrowser(t *testing.T) {
	path := chromium(t)
	s := newShop(t, 3)
	srv := serve(t, s.b, ops.WithRefresh(time.Second), ops.WithTitle("Shop"))
	base := srv.URL + "/ops/"
	waitFor(t, "archive's backlog", func() bool { return s.stat(t, "archive").Backlog == 3 })

	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1500, 560),
	)
	defer cancelAlloc()
	browser, cancelBrowser := chromedp.NewContext(alloc)
	defer cancelBrowser()
	// The first call starts the browser, which lives as long as its context:
	// no timeout on that one; every step after has its own.
	if err := chromedp.Do(browser); err != nil {
		t.Fatal(err)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return v
	}
	eval := func(expr string) bool {
		t.Helper()
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err != nil {
			t.Fatalf("%s: %v", expr, err)
		}
		return v
	}

	do("open the handlers page", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`tr[data-handler="archive"]`)))
	backlog := text(`tr[data-handler="archive"] td[data-k="backlog"]`)
	handled := text(`tr[data-handler="welcome"] td[data-k="handled"]`)
	if backlog != "3" || handled != "0" {
		t.Fatalf("handlers page: archive's backlog %q, welcome handled %q; want 3 and 0", backlog, handled)
	}

	s.broken.Store(false) // the fix is deployed: a replay will succeed
	first := s.records[0]
	do("open welcome's poisoned record",
		chromedp.Click(chromedp.CSS(`a[href="poison?handler=welcome"]`)),
		chromedp.WaitVisible(chromedp.CSS(`tr[data-id="`+first+`"]`)),
		chromedp.Click(chromedp.CSS(`tr[data-id="`+first+`"] a`)),
		chromedp.WaitVisible(chromedp.CSS(`#payload`)),
	)
	if payload := text(`#payload`); !strings.Contains(payload, `"note": "<script>alert('payload')</script>"`) &&
		!strings.Contains(payload, `"note": "\u003cscript\u003ealert('payload')\u003c/script\u003e"`) {
		t.Errorf("the payload is not shown as formatted text: %q", payload)
	}
	if eval(`document.querySelectorAll("#payload *, #error *").length > 0`) {
		t.Error("the payload or the error made elements: markup was not escaped")
	}
	do("replay, and confirm",
		chromedp.Click(chromedp.CSS(`#replay`)),
		chromedp.WaitVisible(chromedp.CSS(`#confirm`)),
		chromedp.Click(chromedp.CSS(`#confirm`)),
		chromedp.WaitVisible(chromedp.CSS(`#flash`)),
	)
	if flash := text(`#flash`); flash != "replayed record "+first {
		t.Errorf("after replay the page says %q", flash)
	}
	if !eval(`!document.querySelector('tr[data-id="` + first + `"]') && document.querySelectorAll("#records tbody tr").length === 2`) {
		t.Error("after replay the replayed record is still listed, or others are gone")
	}

	// Back on the handlers page, its script shows welcome's count rise.
	do("open the handlers page again", chromedp.Navigate(base), chromedp.WaitVisible(chromedp.CSS(`#handlers`)))
	waitFor(t, "welcome's handled count to reach 1 on the page", func() bool {
		n, _ := strconv.Atoi(text(`tr[data-handler="welcome"] td[data-k="handled"]`))
		return n == 1
	})
	if os.Getenv("HERALD_UPDATE_SCREENSHOT") == "1" {
		waitFor(t, "a throughput figure", func() bool { return text(`tr[data-handler="welcome"] td[data-k="rate"]`) != "–" })
		ctx, cancel := context.WithTimeout(browser, 20*time.Second)
		defer cancel()
		shot, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join("..", "docs", "ops.png")
		if err := os.WriteFile(out, shot, 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("saved %s", out)
	}
}
