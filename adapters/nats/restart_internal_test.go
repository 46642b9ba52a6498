package nats

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ThreeDotsLabs/watermill/message"
	"github.com/nats-io/nats.go/jetstream"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/heraldbus/herald/adapters/nats/natstest"
	"github.com/heraldbus/herald/bustest"
)

// With interest retention, the streams created again after a restart of a
// server with memory storage are not prepared until the consumers of the
// running subscribers exist again: the stream drops an event that no
// consumer wants when it is stored. The first preparation here creates the
// streams, then its ctx ends (as a publish's did, with little time left,
// in TestMemoryStorageServerRestart on a loaded machine) before the
// consumer is created again; the next publish must not be stored without
// it.
func TestInterestStreamsPreparedWithTheirConsumers(t *testing.T) {
	srv := natstest.New(t)
	ctx := bustest.Context(t, 30*time.Second)
	prepCtx, endPrep := context.WithCancel(ctx)
	defer endPrep()
	var armed atomic.Bool
	var created atomic.Int32
	core := zapcore.RegisterHooks(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()),
		zapcore.AddSync(nopWriter{}), zap.InfoLevel), func(e zapcore.Entry) error {
		// The poison stream is created after the events stream: end the
		// preparation's ctx then, before the consumers are created again.
		if armed.Load() && e.Message == "stream created" && created.Add(1) == 2 {
			endPrep()
		}
		return nil
	})
	tr, err := New(Config{URL: srv.URL(), Storage: jetstream.MemoryStorage, Retention: RetentionInterest,
		Logger: zap.New(core)})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tr.Close() }()
	if err := tr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const topic = "restart.interest"
	sub, err := tr.Subscriber("restart.h")
	if err != nil {
		t.Fatal(err)
	}
	s := sub.(*subscriber)
	cons, _, err := s.ensureConsumer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	s.cache(topic, cons) // a running subscriber's consumer, without its pumps

	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	bustest.Eventually(t, 20*time.Second, tr.nc.IsConnected, "reconnected")
	armed.Store(true)
	first := message.NewMessage("restart-1", []byte(`{}`))
	first.SetContext(prepCtx)
	if err := tr.Publisher().Publish(topic, first); err == nil {
		t.Fatal("a publish whose ctx ended while the streams were prepared again succeeded")
	}
	if created.Load() != 2 {
		t.Fatalf("%d streams created again, want 2", created.Load())
	}
	second := message.NewMessage("restart-2", []byte(`{}`))
	second.SetContext(ctx)
	bustest.Eventually(t, 20*time.Second, func() bool { return tr.Publisher().Publish(topic, second) == nil }, "publish")

	cons, _, err = s.ensureConsumer(ctx, topic)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending != 1 {
		t.Errorf("the handler's consumer has %d events pending, want 1: the event published after the restart was dropped", info.NumPending)
	}
}

type nopWriter struct{}

func (nopWriter) Write(p []byte) (int, error) { return len(p), nil }
