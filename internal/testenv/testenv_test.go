package testenv_test

import (
	"runtime"
	"testing"

	"github.com/heraldbus/herald/internal/testenv"
)

// ender records how a helper ended a test, and ends the goroutine as
// t.Fatal and t.Skip do.
type ender struct {
	testing.TB
	how, msg string
}

func (e *ender) Helper() {}

func (e *ender) Fatal(args ...any) { e.end("fatal", args) }

func (e *ender) Skip(args ...any) { e.end("skip", args) }

func (e *ender) end(how string, args []any) {
	e.how = how
	if len(args) == 1 {
		e.msg, _ = args[0].(string)
	}
	runtime.Goexit()
}

// run calls fn with a recorder in a goroutine of its own (Goexit ends it).
func run(fn func(testing.TB) string) (e *ender, got string) {
	e = &ender{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = fn(e)
	}()
	<-done
	return e, got
}

func TestGetenv(t *testing.T) {
	const name = "HERALD_TESTENV_PROBE"
	get := func(tb testing.TB) string { return testenv.Getenv(tb, name, "probe not set") }
	for _, tc := range []struct{ ci, value, how, got string }{
		{ci: "", value: "", how: "skip"},
		{ci: "false", value: "", how: "skip"},
		{ci: "true", value: "", how: "fatal"},
		{ci: "true", value: "x", got: "x"},
		{ci: "", value: "y", got: "y"},
	} {
		t.Setenv("CI", tc.ci)
		t.Setenv(name, tc.value)
		e, got := run(get)
		if e.how != tc.how || got != tc.got {
			t.Errorf("CI=%q %s=%q: ended %q, returned %q; want %q, %q", tc.ci, name, tc.value, e.how, got, tc.how, tc.got)
		}
		if e.how != "" && e.msg != "probe not set" {
			t.Errorf("CI=%q: message %q", tc.ci, e.msg)
		}
	}
}
