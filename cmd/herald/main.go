// Command herald is the operator's tool for a Herald deployment on NATS
// JetStream: it lists the handlers and how far behind they are, lists, shows,
// replays and purges poison records, tails live events, and deletes a
// handler's consumers.
//
//	go install github.com/heraldbus/herald/cmd/herald@latest
//	herald --url nats://127.0.0.1:4222 handlers
//	herald poison list --handler email
//	herald poison show ID
//	herald poison replay --handler email
//	herald tail orders.OrderPlaced
//
// The server is the --url flag, else $NATS_URL, else nats://127.0.0.1:4222;
// --stream and --prefix name the events stream and subject prefix when the
// services use other ones than Herald's defaults.
//
// Exit codes, for scripts:
//
//	0  success
//	1  the operation failed (server unreachable, request failed)
//	2  bad usage: unknown command or flag, missing or extra argument, bad URL
//	3  not found: no poison record or handler of that name
//	4  refused: a destructive command was not confirmed (in a script, pass --yes)
//
// Errors are printed on one line to stderr, prefixed "herald: ".
package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes of the command; see the package documentation.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitNotFound = 3
	exitRefused  = 4
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run executes the command line args (without the program name) and returns
// the exit code. It never calls os.Exit, so that tests can run it; ctx ends
// long-running commands (--watch, tail).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	a := &app{stdin: stdin, stdout: stdout, stderr: stderr}
	root := a.rootCommand()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.ExecuteContext(ctx)
	return a.report(err)
}
