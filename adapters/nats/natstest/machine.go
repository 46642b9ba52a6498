package natstest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/heraldbus/herald/internal/testenv"
)

// Machine is a NATS server the test did not start: the one at $NATS_URL.
type Machine struct {
	// URL is $NATS_URL.
	URL string
	// StreamName and SubjectPrefix are the test's own (random), so that runs
	// never collide; the streams StreamName and StreamName+"_POISON" and
	// the tracking bucket (stream "KV_"+StreamName+"_TRACK") are deleted
	// when the test ends.
	StreamName, SubjectPrefix string
}

// NewMachine returns the server at $NATS_URL with a stream name and subject
// prefix of the test's own, named after tag (letters only). Without NATS_URL
// the test fails when CI=true (CI must test the machine's server) and is
// skipped otherwise.
func NewMachine(t testing.TB, tag string) Machine {
	t.Helper()
	url := testenv.Getenv(t, "NATS_URL", "NATS_URL not set: the machine's NATS is not tested (.ci/run sets it when a server listens on 127.0.0.1:4222)")
	var r [6]byte
	_, _ = rand.Read(r[:])
	id := hex.EncodeToString(r[:])
	m := Machine{URL: url, StreamName: strings.ToUpper(tag) + "_" + strings.ToUpper(id), SubjectPrefix: strings.ToLower(tag) + "_" + id}
	t.Cleanup(func() {
		nc, err := nats.Connect(url)
		if err != nil {
			t.Errorf("natstest: delete the test's streams: %v", err)
			return
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			t.Errorf("natstest: delete the test's streams: %v", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, s := range []string{m.StreamName, m.StreamName + "_POISON", "KV_" + m.StreamName + "_TRACK"} { // and the tracking bucket
			_ = js.DeleteStream(ctx, s)
		}
	})
	return m
}
