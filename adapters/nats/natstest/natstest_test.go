package natstest_test

import (
	"testing"

	natsgo "github.com/nats-io/nats.go"
	"go.uber.org/goleak"

	"github.com/heraldbus/herald/adapters/nats/natstest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRestartClose(t *testing.T) {
	srv, err := natstest.Start()
	if err != nil {
		t.Fatal(err)
	}
	url := srv.URL()
	nc, err := natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&natsgo.StreamConfig{Name: "S", Subjects: []string{"s.>"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("s.x", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	nc.Close()
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if srv.URL() != url {
		t.Errorf("URL changed across Restart: %s → %s", url, srv.URL())
	}
	nc, err = natsgo.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, _ = nc.JetStream()
	m, err := js.GetLastMsg("S", "s.x")
	if err != nil || string(m.Data) != "kept" {
		t.Fatalf("after restart: %v %v", m, err)
	}
	nc.Close()
	srv.Close()
	srv.Close() // twice is fine
}

func TestNew(t *testing.T) {
	srv := natstest.New(t)
	nc, err := natsgo.Connect(srv.URL())
	if err != nil {
		t.Fatal(err)
	}
	nc.Close()
}

func TestCluster(t *testing.T) {
	c := natstest.NewCluster(t, 3)
	nc, err := natsgo.Connect(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := nc.JetStream()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.AddStream(&natsgo.StreamConfig{Name: "R3", Subjects: []string{"r3.>"}, Replicas: 3}); err != nil {
		t.Fatal(err)
	}
	if _, err := js.Publish("r3.x", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	info, err := js.StreamInfo("R3")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Shutdown(info.Cluster.Leader); err != nil {
		t.Fatal(err)
	}
	if err := c.Restart(info.Cluster.Leader); err != nil {
		t.Fatal(err)
	}
	if len(c.Names()) != 3 {
		t.Errorf("names %v", c.Names())
	}
}
