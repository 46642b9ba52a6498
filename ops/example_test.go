package ops_test

import (
	"crypto/subtle"
	"log"
	"net/http"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/ops"
)

// requireOperator lets through only requests with the operator's
// credentials: the page has no login of its own. Use your own
// authentication (SSO proxy, session, mTLS) in production.
func requireOperator(user, password string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u), []byte(user)) != 1 ||
			subtle.ConstantTimeCompare([]byte(p), []byte(password)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="herald ops"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The page mounted under /ops/ of a service's own mux, behind basic
// authentication, with payloads hidden.
func Example() {
	b, err := bus.New()
	if err != nil {
		log.Fatal(err)
	}
	page, err := ops.Handler(b, ops.HidePayloads())
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/ops/", http.StripPrefix("/ops", requireOperator("operator", "s3cret", page)))
	_ = mux // http.ListenAndServe("127.0.0.1:8080", mux)
}
