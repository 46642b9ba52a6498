package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/bus"
)

// app holds the command's streams and global flags.
type app struct {
	stdin          io.Reader
	stdout, stderr io.Writer

	url, stream, prefix    string
	creds, user, password  string
	tlsCA, tlsCert, tlsKey string
	timeout                time.Duration
}

// exitError carries the exit code of a failure. Errors that are not an
// exitError come from cobra itself (unknown command or flag, wrong arguments)
// and are usage errors.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

func failed(err error) error { return &exitError{code: exitFailed, err: err} }
func usage(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}
func notFound(err error) error { return &exitError{code: exitNotFound, err: err} }
func refused(format string, args ...any) error {
	return &exitError{code: exitRefused, err: fmt.Errorf(format, args...)}
}

// report prints err on one line and returns its exit code.
func (a *app) report(err error) int {
	if err == nil {
		return exitOK
	}
	code := exitUsage
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", "; ")
	fmt.Fprintf(a.stderr, "herald: %s\n", msg)
	if code == exitUsage && ee == nil {
		fmt.Fprintln(a.stderr, "herald: run 'herald --help' for usage")
	}
	return code
}

func (a *app) rootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "herald",
		Short: "Operate a Herald event bus on NATS JetStream",
		Long: `herald shows the handlers of a Herald deployment on NATS JetStream and how far
behind they are, lists, shows, replays and purges poison records, and tails
live events.

Exit codes: 0 success, 1 failure, 2 bad usage, 3 not found, 4 not confirmed.`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	f := root.PersistentFlags()
	f.StringVar(&a.url, "url", "", "NATS server URL(s), comma separated (default $NATS_URL, else "+nats.DefaultURL+")")
	f.StringVar(&a.stream, "stream", nats.DefaultStreamName, "events stream name (nats.Config.StreamName)")
	f.StringVar(&a.prefix, "prefix", nats.DefaultSubjectPrefix, "subject prefix (nats.Config.SubjectPrefix)")
	f.StringVar(&a.creds, "creds", "", "NATS credentials file (JWT and nkey)")
	f.StringVar(&a.user, "user", "", "NATS user name")
	f.StringVar(&a.password, "password", "", "NATS password (default $NATS_PASSWORD)")
	f.StringVar(&a.tlsCA, "tls-ca", "", "CA certificate file to verify the server")
	f.StringVar(&a.tlsCert, "tls-cert", "", "client certificate file (with --tls-key)")
	f.StringVar(&a.tlsKey, "tls-key", "", "client key file (with --tls-cert)")
	f.DurationVar(&a.timeout, "timeout", 5*time.Second, "bound of the connection and of each request")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usage("%v", err) })

	root.AddCommand(a.handlersCommand(), a.poisonCommand(), a.tailCommand())
	return root
}

// natsConfig builds the transport's configuration from the flags.
func (a *app) natsConfig() (nats.Config, error) {
	raw := a.url
	if raw == "" {
		raw = os.Getenv("NATS_URL")
	}
	if raw == "" {
		raw = nats.DefaultURL
	}
	for _, s := range strings.Split(raw, ",") {
		u, err := url.Parse(strings.TrimSpace(s))
		if err != nil {
			return nats.Config{}, usage("bad NATS URL %q: %v", s, err)
		}
		switch u.Scheme {
		case "nats", "tls", "ws", "wss":
		default:
			return nats.Config{}, usage("bad NATS URL %q: the scheme must be nats, tls, ws or wss", s)
		}
		if u.Host == "" {
			return nats.Config{}, usage("bad NATS URL %q: no host", s)
		}
	}
	if a.timeout <= 0 {
		return nats.Config{}, usage("--timeout must be positive, not %v", a.timeout)
	}
	if (a.tlsCert == "") != (a.tlsKey == "") {
		return nats.Config{}, usage("--tls-cert and --tls-key go together")
	}
	cfg := nats.Config{
		URL: raw, StreamName: a.stream, SubjectPrefix: a.prefix,
		ConnectTimeout: a.timeout, RequestTimeout: a.timeout,
		NATSOptions: []natsgo.Option{natsgo.Name("herald-cli"), natsgo.MaxReconnects(0)},
	}
	if a.creds != "" {
		cfg.NATSOptions = append(cfg.NATSOptions, natsgo.UserCredentials(a.creds))
	}
	password := a.password
	if password == "" {
		password = os.Getenv("NATS_PASSWORD")
	}
	if a.user != "" {
		cfg.NATSOptions = append(cfg.NATSOptions, natsgo.UserInfo(a.user, password))
	}
	if a.tlsCA != "" {
		cfg.NATSOptions = append(cfg.NATSOptions, natsgo.RootCAs(a.tlsCA))
	}
	if a.tlsCert != "" {
		cfg.NATSOptions = append(cfg.NATSOptions, natsgo.ClientCert(a.tlsCert, a.tlsKey))
	}
	return cfg, nil
}

// connect dials NATS and returns the transport; the caller closes it.
func (a *app) connect() (*nats.Transport, error) {
	cfg, err := a.natsConfig()
	if err != nil {
		return nil, err
	}
	tr, err := nats.New(cfg)
	if err != nil {
		return nil, failed(fmt.Errorf("cannot reach NATS (set --url or NATS_URL): %w", err))
	}
	return tr, nil
}

// openBus returns a started bus over a new transport, with no handler: it
// reaches the poison queue. The caller closes it with closeBus.
func (a *app) openBus(ctx context.Context) (*bus.Bus, error) {
	tr, err := a.connect()
	if err != nil {
		return nil, err
	}
	b, err := bus.New(bus.WithTransport(tr))
	if err != nil {
		_ = tr.Close()
		return nil, failed(err)
	}
	sctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	if err := b.Start(sctx); err != nil {
		_ = b.Close(context.Background())
		return nil, failed(fmt.Errorf("start: %w", err))
	}
	return b, nil
}

func closeBus(b *bus.Bus) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = b.Close(ctx)
}

// confirm asks question on stderr and reads the answer from stdin, unless yes
// is set. It refuses when stdin is not a terminal, so that a script never
// destroys anything without --yes.
func (a *app) confirm(yes bool, format string, args ...any) error {
	if yes {
		return nil
	}
	q := fmt.Sprintf(format, args...)
	if !isTerminal(a.stdin) {
		return refused("%s: not confirmed (stdin is not a terminal; pass --yes)", q)
	}
	fmt.Fprintf(a.stderr, "%s? [y/N] ", q)
	var answer string
	_, _ = fmt.Fscanln(a.stdin, &answer)
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return refused("%s: not confirmed", q)
}

// isTerminal reports whether v (stdin or stdout) is a character device (a
// terminal).
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// exactArgs is cobra.ExactArgs with a usage error.
func exactArgs(n int) cobra.PositionalArgs {
	return func(cmd *cobra.Command, args []string) error {
		if len(args) != n {
			return usage("%s takes %d argument(s), got %d", cmd.CommandPath(), n, len(args))
		}
		return nil
	}
}
