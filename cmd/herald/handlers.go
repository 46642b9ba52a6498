package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/adapters/nats"
	"github.com/heraldbus/herald/transport"
)

// handlerRow is one handler as `herald handlers` shows it: the sum of its
// consumers (one per event topic, and one for its replays). Its JSON form is
// stable for scripts.
type handlerRow struct {
	Name        string     `json:"name"`
	Events      []string   `json:"events"`
	Backlog     uint64     `json:"backlog"`     // pending and ack-pending messages
	AckPending  int        `json:"ack_pending"` // delivered, not yet acknowledged
	Redelivered int        `json:"redelivered"` // delivered more than once, not yet acknowledged
	LastActive  *time.Time `json:"last_active"` // last delivery to any of its consumers
	Consumers   []string   `json:"consumers"`   // its JetStream consumers
}

// consumerDescription is how the NATS transport describes a handler's
// consumer (adapters/nats subscribe.go).
const consumerDescription = "Herald handler %q, topic %q"

func (a *app) handlersCommand() *cobra.Command {
	var (
		asJSON   bool
		watch    bool
		interval time.Duration
	)
	cmd := &cobra.Command{
		Use:   "handlers",
		Short: "List the handlers with their backlog, ack pending, redelivered and last activity",
		Args:  exactArgs(0),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if interval <= 0 {
				return usage("--interval must be positive, not %v", interval)
			}
			tr, err := a.connect()
			if err != nil {
				return err
			}
			defer tr.Close()
			ctx := cmd.Context()
			for {
				rows, err := a.listHandlers(ctx, tr)
				if err != nil && watch && ctx.Err() != nil {
					return nil // interrupted during a refresh
				}
				if err != nil {
					return failed(err)
				}
				if watch && isTerminal(a.stdout) {
					fmt.Fprint(a.stdout, "\033[H\033[2J") // clear the screen
				}
				if asJSON {
					if err := writeJSON(a.stdout, rows); err != nil {
						return failed(err)
					}
				} else {
					writeHandlers(a.stdout, rows)
				}
				if !watch {
					return nil
				}
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(interval):
				}
				if !asJSON {
					fmt.Fprintln(a.stdout)
				}
			}
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (an array of handlers)")
	cmd.Flags().BoolVarP(&watch, "watch", "w", false, "refresh every --interval until interrupted")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval of --watch")
	cmd.AddCommand(a.deleteHandlerCommand())
	return cmd
}

// listHandlers reads the consumers of the events stream and sums them by
// handler, in order of name.
func (a *app) listHandlers(ctx context.Context, tr *nats.Transport) ([]handlerRow, error) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	stream, err := tr.JetStream().Stream(ctx, tr.Config().StreamName)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return []handlerRow{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %q: %w", tr.Config().StreamName, err)
	}
	byName := map[string]*handlerRow{}
	lister := stream.ListConsumers(ctx)
	for info := range lister.Info() {
		handler, topic, ok := parseDescription(info.Config.Description)
		if !ok {
			continue // not a Herald handler's consumer
		}
		row := byName[handler]
		if row == nil {
			row = &handlerRow{Name: handler, Events: []string{}}
			byName[handler] = row
		}
		row.Consumers = append(row.Consumers, info.Name)
		if topic != transport.ReplayTopic(handler) {
			row.Events = append(row.Events, topic)
		}
		row.Backlog += info.NumPending + uint64(info.NumAckPending)
		row.AckPending += info.NumAckPending
		row.Redelivered += info.NumRedelivered
		if last := info.Delivered.Last; last != nil && (row.LastActive == nil || last.After(*row.LastActive)) {
			t := *last
			row.LastActive = &t
		}
	}
	if err := lister.Err(); err != nil {
		return nil, fmt.Errorf("list consumers of %q: %w", tr.Config().StreamName, err)
	}
	rows := make([]handlerRow, 0, len(byName))
	for _, r := range byName {
		slices.Sort(r.Events)
		slices.Sort(r.Consumers)
		rows = append(rows, *r)
	}
	slices.SortFunc(rows, func(x, y handlerRow) int { return strings.Compare(x.Name, y.Name) })
	return rows, nil
}

// parseDescription returns the handler and topic of a Herald consumer.
func parseDescription(d string) (handler, topic string, ok bool) {
	n, err := fmt.Sscanf(d, consumerDescription, &handler, &topic)
	return handler, topic, err == nil && n == 2
}

func writeHandlers(w io.Writer, rows []handlerRow) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "HANDLER\tEVENT\tBACKLOG\tACK PENDING\tREDELIVERED\tLAST ACTIVE")
	for _, r := range rows {
		last := "never"
		if r.LastActive != nil {
			last = ago(*r.LastActive)
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%s\n", r.Name, strings.Join(r.Events, ","), r.Backlog, r.AckPending, r.Redelivered, last)
	}
	_ = tw.Flush()
}

// ago is a short "how long ago" of t.
func ago(t time.Time) string {
	d := time.Since(t)
	if d < time.Second {
		return "just now"
	}
	return d.Round(time.Second).String() + " ago"
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (a *app) deleteHandlerCommand() *cobra.Command {
	var yes bool
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a handler's consumers: its backlog is dropped, and a process subscribing it again starts from new events",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			tr, err := a.connect()
			if err != nil {
				return err
			}
			defer tr.Close()
			ctx := cmd.Context()
			rows, err := a.listHandlers(ctx, tr)
			if err != nil {
				return failed(err)
			}
			i := slices.IndexFunc(rows, func(r handlerRow) bool { return r.Name == name })
			if i < 0 {
				return notFound(fmt.Errorf("no handler %q on stream %q", name, tr.Config().StreamName))
			}
			row := rows[i]
			if err := a.confirm(yes, "delete handler %q (%d consumers, backlog %d)", name, len(row.Consumers), row.Backlog); err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(ctx, a.timeout)
			defer cancel()
			// The transport's own deletion (transport.Handlers), as
			// Bus.DeleteHandler uses: every consumer of the handler, its
			// replay consumer included.
			if _, err := tr.DeleteHandler(ctx, name); err != nil {
				return failed(err)
			}
			fmt.Fprintf(a.stdout, "deleted handler %q (%d consumers)\n", name, len(row.Consumers))
			return nil
		},
	}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation")
	return cmd
}
