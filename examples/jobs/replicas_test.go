package main

import (
	"bytes"
	"image"
	"net/http"
	"slices"
	"testing"
)

// Two replicas over NATS share the work, the statuses and the blobs: a job
// accepted by one is handled by either, and its status and thumbnail are
// served by the other.
func TestReplicas(t *testing.T) {
	forEachTransport(t, func(t *testing.T, cfg config) {
		if cfg.NATSURL == "" {
			t.Skip("replicas share a broker")
		}
		a, b := start(t, cfg), start(t, cfg)
		var ids []string
		for _, to := range []string{"a@example.com", "b@example.com", "c@example.com", "d@example.com"} {
			ids = append(ids, a.postEmail(to, "replicas", "either sends it"))
		}
		for _, id := range ids {
			b.waitState(id, "done")
		}
		sent := append(sentIDs(t, a.app.mail), sentIDs(t, b.app.mail)...)
		slices.Sort(sent)
		slices.Sort(ids)
		if !slices.Equal(sent, ids) {
			t.Errorf("sent %q, want %q", sent, ids)
		}

		id := a.post("/images?max=40", "image/png", encodePNG(t, twoColours(80, 60)))
		if st := b.waitState(id, "done"); st.Result != "/thumbnails/"+id {
			t.Errorf("status from the other replica: %+v", st)
		}
		code, _, thumb := b.do(http.MethodGet, "/thumbnails/"+id, "", nil)
		if c, _, err := image.DecodeConfig(bytes.NewReader(thumb)); code != http.StatusOK || err != nil || c.Width != 40 || c.Height != 30 {
			t.Errorf("thumbnail from the other replica: %d, %+v, %v", code, c, err)
		}

		id = b.post("/imports", "text/csv", []byte(importCSV))
		if st := a.waitState(id, "done"); *st.Rows != (rowCounts{Total: 6, Done: 3, Failed: 3}) {
			t.Errorf("import status from the other replica: %+v", *st.Rows)
		}
	})
}
