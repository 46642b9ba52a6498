package ops_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/ops"
)

// TestExampleMiddleware checks the example's authentication: the page is
// reachable with the credentials only.
func TestExampleMiddleware(t *testing.T) {
	b, err := bus.New()
	if err != nil {
		t.Fatal(err)
	}
	page, err := ops.Handler(b)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/ops", requireOperator("operator", "s3cret", page)))
	defer srv.Close()
	for _, tc := range []struct {
		name       string
		user, pass string
		want       int
	}{
		{"no credentials", "", "", http.StatusUnauthorized},
		{"wrong password", "operator", "nope", http.StatusUnauthorized},
		{"operator", "operator", "s3cret", http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, srv.URL+"/ops/", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.user != "" {
				req.SetBasicAuth(tc.user, tc.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.want)
			}
		})
	}
}
