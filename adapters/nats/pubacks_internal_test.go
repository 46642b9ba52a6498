package nats

import (
	"errors"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// A PubAck is recognised without decoding it only when it is one: every
// reply with an error, or malformed, still fails the publish.
func TestPubAckError(t *testing.T) {
	for _, tc := range []struct {
		data string
		ok   bool
	}{
		{`{"stream":"HERALD","seq":12}`, true},
		{`{"stream":"HERALD","seq":12,"duplicate":true}`, true},
		{`{"stream":"HERALD","domain":"hub","seq":1}`, true},
		{`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`, false},
		{`{"stream":"HERALD","error":{"code":400,"err_code":10071,"description":"wrong last sequence: 3"}}`, false},
		{`{"stream":"HERALD","seq":1,"error":{"code":500,"description":"x"}}`, false},
		{`{"stream":"","seq":1}`, false},
		{`{"stream":"HERALD","seq":1`, false},
		{`{"seq":1}`, false},
		{`not json`, false},
		{``, false},
	} {
		err := pubAckError(&nats.Msg{Data: []byte(tc.data)})
		if (err == nil) != tc.ok {
			t.Errorf("pubAckError(%s) = %v, want ok=%v", tc.data, err, tc.ok)
		}
		if !tc.ok && okPubAck([]byte(tc.data)) {
			t.Errorf("okPubAck(%s) = true", tc.data)
		}
	}
	var api *jetstream.APIError
	err := pubAckError(&nats.Msg{Data: []byte(`{"error":{"code":503,"err_code":10077,"description":"maximum messages exceeded"}}`)})
	if !errors.As(err, &api) || api.ErrorCode != 10077 {
		t.Errorf("error reply: %v, want a *jetstream.APIError with its code", err)
	}
}
