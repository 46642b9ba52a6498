package middleware_test

import (
	"errors"
	"testing"

	"github.com/ThreeDotsLabs/watermill"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/heraldbus/herald/middleware"
)

func TestWatermillLoggerWritesToZap(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := middleware.WatermillLogger(zap.New(core)).With(watermill.LogFields{"component": "router"})
	l.Info("started", watermill.LogFields{"topic": "t"})
	l.Error("failed", errors.New("boom"), nil)
	l.Trace("trace", nil)
	l.Debug("debug", nil)
	all := logs.All()
	if len(all) != 4 {
		t.Fatalf("%d entries", len(all))
	}
	if all[0].ContextMap()["component"] != "router" || all[0].ContextMap()["topic"] != "t" || all[0].Level != zapcore.InfoLevel {
		t.Errorf("info entry %+v", all[0])
	}
	if all[1].Level != zapcore.ErrorLevel || all[1].ContextMap()["error"] != "boom" {
		t.Errorf("error entry %+v", all[1])
	}
	if all[2].Level != zapcore.DebugLevel {
		t.Errorf("trace maps to %v", all[2].Level)
	}
}
