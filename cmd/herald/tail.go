package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/cobra"

	"github.com/heraldbus/herald/transport"
)

// tailLine is one event in the JSON output of `herald tail`, stable for
// scripts: one object a line.
type tailLine struct {
	Event         string          `json:"event"`
	ID            string          `json:"id"`
	CorrelationID string          `json:"correlation_id,omitempty"`
	CausationID   string          `json:"causation_id,omitempty"`
	PublishedAt   string          `json:"published_at,omitempty"`
	Stream        uint64          `json:"stream_seq"`
	Payload       json.RawMessage `json:"payload,omitempty"`
	PayloadBase64 []byte          `json:"payload_base64,omitempty"`
}

func (a *app) tailCommand() *cobra.Command {
	var (
		asJSON    bool
		fromStart bool
		count     int
	)
	cmd := &cobra.Command{
		Use:   "tail EVENT",
		Short: "Print the events of one name as they are published (EVENT may be a NATS wildcard such as '>')",
		Args:  exactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usage("--count must be 0 (no limit) or more, not %d", count)
			}
			tr, err := a.connect()
			if err != nil {
				return err
			}
			defer tr.Close()
			ctx, cancel := context.WithCancel(cmd.Context())
			defer cancel()
			subjects := tr.EventSubjects(args[0]) // its own subject, and its keyed partitions'
			if len(subjects) > 1 && !multiFilter(tr.Conn().ConnectedServerVersion()) {
				fmt.Fprintf(a.stderr, "herald: nats-server %s reads one subject per consumer: not tailing the keyed events of %s, on %s (tail '_keyed.*.%s' for them)\n",
					tr.Conn().ConnectedServerVersion(), args[0], subjects[1], args[0])
				subjects = subjects[:1]
			}
			subject := strings.Join(subjects, ", ")
			policy := jetstream.DeliverNewPolicy
			if fromStart {
				policy = jetstream.DeliverAllPolicy
			}
			rctx, rcancel := context.WithTimeout(ctx, a.timeout)
			cons, err := tr.JetStream().OrderedConsumer(rctx, tr.Config().StreamName, jetstream.OrderedConsumerConfig{
				FilterSubjects: subjects, DeliverPolicy: policy,
			})
			rcancel()
			if err != nil {
				if errors.Is(err, jetstream.ErrStreamNotFound) {
					return notFound(fmt.Errorf("no stream %q on the server (is --stream right?)", tr.Config().StreamName))
				}
				return failed(fmt.Errorf("tail %s: %w", subject, err))
			}
			msgs, err := cons.Messages()
			if err != nil {
				return failed(fmt.Errorf("tail %s: %w", subject, err))
			}
			stop := context.AfterFunc(ctx, msgs.Stop)
			defer stop()
			defer msgs.Stop()
			fmt.Fprintf(a.stderr, "herald: tailing %s on stream %s (Ctrl-C to stop)\n", subject, tr.Config().StreamName)
			for n := 0; count == 0 || n < count; n++ {
				m, err := msgs.Next()
				if err != nil {
					if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
						return nil
					}
					return failed(fmt.Errorf("tail %s: %w", subject, err))
				}
				if err := a.printEvent(m, asJSON); err != nil {
					return failed(err)
				}
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON object a line")
	cmd.Flags().BoolVar(&fromStart, "from-start", false, "begin with the events the stream still holds, not the next one")
	cmd.Flags().IntVarP(&count, "count", "n", 0, "stop after this many events (0: until interrupted)")
	return cmd
}

func (a *app) printEvent(m jetstream.Msg, asJSON bool) error {
	h := m.Headers()
	line := tailLine{
		Event: h.Get(transport.KeyEvent), ID: h.Get(transport.KeyID),
		CorrelationID: h.Get(transport.KeyCorrelationID), CausationID: h.Get(transport.KeyCausationID),
		PublishedAt: h.Get(transport.KeyPublishedAt),
	}
	if line.ID == "" { // Herald sends the ID once, as Nats-Msg-Id
		line.ID = h.Get(jetstream.MsgIDHeader)
	}
	if md, err := m.Metadata(); err == nil {
		line.Stream = md.Sequence.Stream
	}
	if asJSON {
		if json.Valid(m.Data()) {
			line.Payload = m.Data()
		} else {
			line.PayloadBase64 = m.Data()
		}
		b, err := json.Marshal(line)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(a.stdout, "%s\n", b)
		return err
	}
	at := line.PublishedAt
	if t, err := time.Parse(time.RFC3339Nano, at); err == nil {
		at = t.Local().Format("15:04:05.000")
	}
	fmt.Fprintf(a.stdout, "%s %s id=%s correlation=%s", at, line.Event, line.ID, line.CorrelationID)
	if line.CausationID != "" {
		fmt.Fprintf(a.stdout, " causation=%s", line.CausationID)
	}
	fmt.Fprintf(a.stdout, "\n%s\n", prettyPayload(m.Data()))
	return nil
}

// multiFilter reports whether a server of version v ("2.9.10") gives a
// consumer several filter subjects: 2.10 and newer.
func multiFilter(v string) bool {
	var major, minor int
	if _, err := fmt.Sscanf(v, "%d.%d", &major, &minor); err != nil {
		return true // unknown: let the server answer
	}
	return major > 2 || major == 2 && minor >= 10
}
