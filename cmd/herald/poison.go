package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/bus"
	"github.com/heraldbus/herald/transport"
)

// recordJSON is a poison record in the command's JSON output, stable for
// scripts. Payload is the payload itself when it is JSON, else absent and
// PayloadBase64 holds it.
type recordJSON struct {
	ID            string            `json:"id"`
	Handler       string            `json:"handler"`
	Event         string            `json:"event"`
	EventID       string            `json:"event_id"`
	CorrelationID string            `json:"correlation_id,omitempty"`
	CausationID   string            `json:"causation_id,omitempty"`
	PublishedAt   time.Time         `json:"published_at"`
	Error         string            `json:"error"`
	Stack         string            `json:"stack,omitempty"`
	Attempts      int               `json:"attempts"`
	FirstFailure  time.Time         `json:"first_failure"`
	LastFailure   time.Time         `json:"last_failure"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	Payload       json.RawMessage   `json:"payload,omitempty"`
	PayloadBase64 []byte            `json:"payload_base64,omitempty"`
}

func toJSON(r transport.PoisonRecord, full bool) recordJSON {
	out := recordJSON{
		ID: r.ID, Handler: r.Handler, Event: r.Event.Name, EventID: r.Event.ID,
		CorrelationID: r.Event.CorrelationID, CausationID: r.Event.CausationID,
		PublishedAt: r.Event.PublishedAt, Error: r.Error, Attempts: r.Attempts,
		FirstFailure: r.FirstFailure, LastFailure: r.LastFailure,
	}
	if full {
		out.Stack, out.Metadata = r.Stack, r.Metadata
		if json.Valid(r.Payload) {
			out.Payload = r.Payload
		} else {
			out.PayloadBase64 = r.Payload
		}
	}
	return out
}

func (a *app) poisonCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "poison",
		Short: "List, show, replay and purge poison records",
		Args:  exactArgs(0),
	}
	cmd.AddCommand(a.poisonListCommand(), a.poisonShowCommand(), a.poisonReplayCommand(), a.poisonPurgeCommand())
	return cmd
}

func (a *app) poisonListCommand() *cobra.Command {
	var (
		q      transport.PoisonQuery
		asJSON bool
		limit  int
	)
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List poison records, oldest first",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if limit < 0 {
				return usage("--limit must be 0 (all) or more, not %d", limit)
			}
			b, err := a.openBus(cmd.Context())
			if err != nil {
				return err
			}
			defer closeBus(b)
			recs := []recordJSON{}
			for r, err := range b.Poison().All(cmd.Context(), q) {
				if err != nil {
					return failed(err)
				}
				recs = append(recs, toJSON(r, false))
				if limit > 0 && len(recs) == limit {
					break
				}
			}
			if asJSON {
				return writeJSON(a.stdout, recs)
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tHANDLER\tEVENT\tATTEMPTS\tLAST FAILURE\tERROR")
			for _, r := range recs {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", r.ID, r.Handler, r.Event, r.Attempts,
					r.LastFailure.UTC().Format(time.RFC3339), oneLine(r.Error, 60))
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&q.Handler, "handler", "", "only the records of this handler")
	cmd.Flags().StringVar(&q.Event, "event", "", "only the records of this event name")
	cmd.Flags().IntVar(&limit, "limit", 0, "at most this many records (0: all)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (an array of records, without payloads and stacks)")
	return cmd
}

// oneLine cuts s to one line of at most n runes.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}

func (a *app) poisonShowCommand() *cobra.Command {
	var raw, asJSON bool
	cmd := &cobra.Command{
		Use:   "show ID",
		Short: "Show one poison record: metadata, error, stack, attempts and payload",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if raw && asJSON {
				return usage("--raw and --json exclude each other")
			}
			b, err := a.openBus(cmd.Context())
			if err != nil {
				return err
			}
			defer closeBus(b)
			r, err := b.Poison().Get(cmd.Context(), args[0])
			if err != nil {
				return poisonErr(err)
			}
			switch {
			case raw:
				_, err = a.stdout.Write(r.Payload)
				return err
			case asJSON:
				return writeJSON(a.stdout, toJSON(r, true))
			}
			writeRecord(a.stdout, r)
			return nil
		},
	}
	cmd.Flags().BoolVar(&raw, "raw", false, "print the payload's bytes only, as stored")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the record as JSON")
	return cmd
}

func writeRecord(w io.Writer, r transport.PoisonRecord) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(k, v string) {
		if v != "" {
			fmt.Fprintf(tw, "%s:\t%s\n", k, v)
		}
	}
	row("ID", r.ID)
	row("Handler", r.Handler)
	row("Event", r.Event.Name)
	row("Event ID", r.Event.ID)
	row("Correlation ID", r.Event.CorrelationID)
	row("Causation ID", r.Event.CausationID)
	row("Ordering key", r.Event.OrderingKey)
	if !r.Event.PublishedAt.IsZero() {
		row("Published", r.Event.PublishedAt.UTC().Format(time.RFC3339Nano))
	}
	row("Attempts", fmt.Sprint(r.Attempts))
	row("First failure", r.FirstFailure.UTC().Format(time.RFC3339Nano))
	row("Last failure", r.LastFailure.UTC().Format(time.RFC3339Nano))
	row("Error", oneLine(r.Error, 1<<20))
	_ = tw.Flush()
	if len(r.Metadata) > 0 {
		fmt.Fprintln(w, "\nMetadata:")
		for _, k := range slices.Sorted(maps.Keys(r.Metadata)) {
			fmt.Fprintf(w, "  %s: %s\n", k, r.Metadata[k])
		}
	}
	if r.Stack != "" {
		fmt.Fprintf(w, "\nStack:\n%s\n", strings.TrimRight(r.Stack, "\n"))
	}
	fmt.Fprintf(w, "\nPayload (%d bytes):\n%s\n", len(r.Payload), prettyPayload(r.Payload))
}

// prettyPayload indents a JSON payload, and quotes any other.
func prettyPayload(p []byte) string {
	var buf bytes.Buffer
	if json.Indent(&buf, p, "", "  ") == nil {
		return buf.String()
	}
	return fmt.Sprintf("%q", p)
}

// poisonErr classifies an error of the poison queue.
func poisonErr(err error) error {
	if errors.Is(err, bus.ErrPoisonNotFound) {
		return notFound(err)
	}
	return failed(err)
}

// selection is the records a replay or purge acts on: one ID, a handler's
// or all.
type selection struct {
	handler string
	all     bool
}

func (s *selection) flags(cmd *cobra.Command) {
	cmd.Flags().StringVar(&s.handler, "handler", "", "every record of this handler")
	cmd.Flags().BoolVar(&s.all, "all", false, "every record of every handler")
}

// ids returns the IDs selected by args and the flags, oldest first.
func (s *selection) ids(ctx context.Context, b *bus.Bus, args []string) ([]string, error) {
	n := 0
	for _, set := range []bool{len(args) > 0, s.handler != "", s.all} {
		if set {
			n++
		}
	}
	if n != 1 || len(args) > 1 {
		return nil, usage("give one record ID, or --handler NAME, or --all")
	}
	if len(args) == 1 {
		if _, err := b.Poison().Get(ctx, args[0]); err != nil {
			return nil, poisonErr(err)
		}
		return args, nil
	}
	var ids []string
	for r, err := range b.Poison().All(ctx, transport.PoisonQuery{Handler: s.handler}) {
		if err != nil {
			return nil, failed(err)
		}
		ids = append(ids, r.ID)
	}
	return ids, nil
}

func (s *selection) String() string {
	if s.handler != "" {
		return fmt.Sprintf("of handler %q", s.handler)
	}
	return "of every handler"
}

func (a *app) poisonReplayCommand() *cobra.Command {
	var sel selection
	cmd := &cobra.Command{
		Use:   "replay ID | --handler NAME | --all",
		Short: "Deliver poisoned events again to the handler that failed them, and delete their records",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.eachRecord(cmd.Context(), &sel, args, "replayed", (*bus.PoisonQueue).Replay, func(int) error { return nil })
		},
	}
	sel.flags(cmd)
	return cmd
}

func (a *app) poisonPurgeCommand() *cobra.Command {
	var (
		sel selection
		yes bool
	)
	cmd := &cobra.Command{
		Use:   "purge ID | --handler NAME | --all",
		Short: "Delete poison records for good (asks for confirmation unless --yes)",
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.eachRecord(cmd.Context(), &sel, args, "purged", (*bus.PoisonQueue).Purge, func(n int) error {
				if len(args) == 1 {
					return a.confirm(yes, "purge poison record %s for good", args[0])
				}
				return a.confirm(yes, "purge %d poison records %s for good", n, sel.String())
			})
		},
	}
	sel.flags(cmd)
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}

// eachRecord applies do to the selected records, after check(count) agrees,
// and says how many it did.
func (a *app) eachRecord(ctx context.Context, sel *selection, args []string, verb string,
	do func(q *bus.PoisonQueue, ctx context.Context, id string) error, check func(int) error) error {
	if len(args) > 1 {
		return usage("give one record ID, or --handler NAME, or --all")
	}
	b, err := a.openBus(ctx)
	if err != nil {
		return err
	}
	defer closeBus(b)
	ids, err := sel.ids(ctx, b, args)
	if err != nil {
		return err
	}
	if err := check(len(ids)); err != nil {
		return err
	}
	if len(args) == 1 {
		if err := do(b.Poison(), ctx, args[0]); err != nil {
			return poisonErr(err)
		}
		fmt.Fprintf(a.stdout, "%s %s\n", verb, args[0])
		return nil
	}
	for i, id := range ids {
		if err := do(b.Poison(), ctx, id); err != nil {
			if errors.Is(err, bus.ErrPoisonNotFound) {
				continue // replayed or purged by someone else meanwhile
			}
			return failed(fmt.Errorf("%s %d of %d records, then %s: %w", verb, i, len(ids), id, err))
		}
	}
	fmt.Fprintf(a.stdout, "%s %d records\n", verb, len(ids))
	return nil
}
