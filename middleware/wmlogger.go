package middleware

import (
	"github.com/ThreeDotsLabs/watermill"
	"go.uber.org/zap"
)

// WatermillLogger adapts a zap logger to watermill's LoggerAdapter, so that
// watermill's own logs (routers, publishers, subscribers of adapters) go to the
// same logger as Herald's. Watermill's Trace level maps to zap's Debug.
func WatermillLogger(l *zap.Logger) watermill.LoggerAdapter {
	if l == nil {
		l = zap.NewNop()
	}
	return wmLogger{l: l}
}

type wmLogger struct{ l *zap.Logger }

func fields(f watermill.LogFields) []zap.Field {
	out := make([]zap.Field, 0, len(f))
	for k, v := range f {
		out = append(out, zap.Any(k, v))
	}
	return out
}

func (w wmLogger) Error(msg string, err error, f watermill.LogFields) {
	w.l.Error(msg, append(fields(f), zap.Error(err))...)
}
func (w wmLogger) Info(msg string, f watermill.LogFields)  { w.l.Info(msg, fields(f)...) }
func (w wmLogger) Debug(msg string, f watermill.LogFields) { w.l.Debug(msg, fields(f)...) }
func (w wmLogger) Trace(msg string, f watermill.LogFields) { w.l.Debug(msg, fields(f)...) }
func (w wmLogger) With(f watermill.LogFields) watermill.LoggerAdapter {
	return wmLogger{l: w.l.With(fields(f)...)}
}
