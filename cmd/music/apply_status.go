package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/music-coord/music/apply"
	"github.com/music-coord/music/capture"
	"github.com/music-coord/music/internal/config"
)

type statusConfig struct {
	Captures []string `yaml:"captures"` // capture agents' metrics addresses (host:port)
	Agents   []string `yaml:"agents"`   // apply agents' metrics addresses (host:port)
	Gateways []string `yaml:"gateways"` // gateways' metrics addresses (host:port)
	NATSURL  string   `yaml:"nats_url"` // "" skips the stream view
}

func (c *statusConfig) Validate() error {
	c.Agents, c.Captures, c.Gateways = dedupe(c.Agents), dedupe(c.Captures), dedupe(c.Gateways)
	if len(c.Agents) == 0 && len(c.Captures) == 0 && len(c.Gateways) == 0 && c.NATSURL == "" {
		return errors.New("captures, agents, gateways, nats_url: set at least one")
	}
	return nil
}

// runStatus prints every apply agent's origins and tables (lag, pending, last error) and
// every change stream's consumers, at a glance.
func runStatus(args []string) int {
	cfg := &statusConfig{NATSURL: "nats://127.0.0.1:4222"}
	fs := flag.NewFlagSet("music status", flag.ContinueOnError)
	fs.String("config", "", "YAML config file (keys: captures, agents, nats_url)")
	fs.Var(listFlag{&cfg.Captures}, "captures", "capture agents' /status addresses host:port (comma-separated)")
	fs.Var(listFlag{&cfg.Agents}, "agents", "apply agents' /status addresses host:port (comma-separated)")
	fs.Var(listFlag{&cfg.Gateways}, "gateways", "gateways' /status addresses host:port (comma-separated): sync tables and their owners")
	fs.StringVar(&cfg.NATSURL, "nats-url", cfg.NATSURL, "NATS URL for the stream view (empty: skip)")
	if err := config.Parse(fs, args, cfg); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		fmt.Fprintln(os.Stderr, "music status:", err)
		return 2
	}
	rc := 0
	if len(cfg.Captures) > 0 {
		if err := printCaptures(os.Stdout, cfg.Captures); err != nil {
			fmt.Fprintln(os.Stderr, "music status:", err)
			rc = 1
		}
	}
	if len(cfg.Agents) > 0 {
		if err := printAgents(os.Stdout, cfg.Agents); err != nil {
			fmt.Fprintln(os.Stderr, "music status:", err)
			rc = 1
		}
	}
	if len(cfg.Gateways) > 0 {
		if err := printGateways(os.Stdout, cfg.Gateways); err != nil {
			fmt.Fprintln(os.Stderr, "music status:", err)
			rc = 1
		}
	}
	if cfg.NATSURL != "" {
		if err := printStreams(os.Stdout, cfg.NATSURL); err != nil {
			fmt.Fprintln(os.Stderr, "music status:", err)
			rc = 1
		}
	}
	return rc
}

// printCaptures prints every capture agent's status: state, checkpoint, lag, last error,
// stopped tables and snapshots. An agent that does not answer is an error, never "ok".
func printCaptures(out io.Writer, addrs []string) error {
	var errs []error
	client := &http.Client{Timeout: 5 * time.Second}
	fmt.Fprintln(out, "CAPTURE")
	for _, a := range addrs {
		var st capture.Status
		resp, err := client.Get("http://" + a + "/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err != nil {
			fmt.Fprintf(out, "  agent %s: not answering: %v\n", a, err)
			errs = append(errs, fmt.Errorf("capture %s: %w", a, err))
			continue
		}
		st.Format(out, "  ")
		if st.AutoIncrement != "" {
			// The flag: this site's AUTO_INCREMENT ids collide with other sites'.
			fmt.Fprintf(out, "    flag AUTO_INCREMENT_UNSAFE: %s\n", st.AutoIncrement)
		}
	}
	fmt.Fprintln(out)
	return errors.Join(errs...)
}

func printAgents(out io.Writer, agents []string) error {
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tORIGIN\tTABLE\tMODE\tSTATE\tLAG_MS\tPENDING\tCHANGES\tCONFLICTS\tREFUSED\tSKIPPED\tLAST_ERROR")
	var errs []error
	client := &http.Client{Timeout: 5 * time.Second}
	for _, a := range agents {
		var st []apply.OriginStatus
		resp, err := client.Get("http://" + a + "/status")
		if err == nil {
			err = json.NewDecoder(resp.Body).Decode(&st)
			resp.Body.Close()
		}
		if err != nil {
			fmt.Fprintf(tw, "?\t?\t-\t-\tdown\t-\t-\t-\t-\t-\t-\tagent %s: %v\n", a, err)
			errs = append(errs, err)
			continue
		}
		for _, s := range st {
			tables := make([]string, 0, len(s.Tables))
			for t := range s.Tables {
				tables = append(tables, t)
			}
			sort.Strings(tables)
			if len(tables) == 0 {
				fmt.Fprintln(tw, statusLine(s, "-", apply.TableStatus{}))
			}
			for _, t := range tables {
				fmt.Fprintln(tw, statusLine(s, t, s.Tables[t]))
			}
		}
	}
	for _, a := range agents {
		var rs map[string]apply.ResyncProgress
		resp, err := client.Get("http://" + a + "/resync")
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&rs)
		resp.Body.Close()
		if err != nil {
			continue
		}
		for t, p := range rs {
			state := "running"
			if p.Done {
				state = "done"
			}
			fmt.Fprintf(tw, "%s\tresync\t%s\t-\t%s\t-\t-\t%d\t%d\t-\t-\trows read %d, applied %d, since %s\n", a, t, state,
				p.Rows, p.Conflicts, p.Rows, p.Applied, p.Started.Format(time.RFC3339))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

// printGateways prints every gateway's sync table patterns, the tables it owns (with the
// fence and the epoch's last claimed commit) and its counters.
func printGateways(out io.Writer, addrs []string) error {
	var errs []error
	client := &http.Client{Timeout: 5 * time.Second}
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nGATEWAY\tSITE\tSYNC_TABLES\tOWNS\tTAKEOVERS\tCOMMITS\tFENCED\tBUSY\tUNCONFIRMED")
	for _, a := range addrs {
		var st GatewayStatus
		resp, err := client.Get("http://" + a + "/status")
		if err == nil {
			if resp.StatusCode != http.StatusOK {
				err = fmt.Errorf("HTTP %s", resp.Status)
			} else {
				err = json.NewDecoder(resp.Body).Decode(&st)
			}
			resp.Body.Close()
		}
		if err != nil {
			fmt.Fprintf(tw, "%s\t?\t-\tdown: %v\n", a, err)
			errs = append(errs, fmt.Errorf("gateway %s: %w", a, err))
			continue
		}
		var owns []string
		for _, o := range st.Owned {
			owns = append(owns, fmt.Sprintf("%s(fence %d, last %d)", o.Table, o.Fence, o.Last))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n", a, st.Site, strings.Join(st.SyncTables, ","), or(strings.Join(owns, " "), "-"),
			st.Stats.Takeovers, st.Stats.Commits, st.Stats.Fenced, st.Stats.Busy, st.Stats.Unconfirmed)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return errors.Join(errs...)
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func printStreams(out io.Writer, url string) error {
	nc, err := nats.Connect(url, nats.Timeout(3*time.Second))
	if err != nil {
		return fmt.Errorf("nats %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tw := tabwriter.NewWriter(out, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "\nSTREAM\tMESSAGES\tLAST_SEQ\tCONSUMER\tPENDING\tACK_PENDING\tACK_FLOOR")
	streams := js.ListStreams(ctx)
	for s := range streams.Info() {
		if !strings.HasPrefix(s.Config.Name, "MUSIC_CDC_") {
			continue
		}
		stream, err := js.Stream(ctx, s.Config.Name)
		if err != nil {
			return err
		}
		n := 0
		consumers := stream.ListConsumers(ctx)
		for c := range consumers.Info() {
			n++
			fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%d\t%d\t%d\n", s.Config.Name, s.State.Msgs, s.State.LastSeq,
				c.Name, c.NumPending, c.NumAckPending, c.AckFloor.Stream)
		}
		if n == 0 {
			fmt.Fprintf(tw, "%s\t%d\t%d\t-\t-\t-\t-\n", s.Config.Name, s.State.Msgs, s.State.LastSeq)
		}
	}
	if err := streams.Err(); err != nil {
		return err
	}
	return tw.Flush()
}

// statusLine is one table's row of the apply view. STATE is QUARANTINED (changes skipped
// until a resync releases it), retrying (a change keeps failing) or ok; the error column
// is the quarantine reason or the table's last error (cut at 120 characters).
func statusLine(s apply.OriginStatus, table string, t apply.TableStatus) string {
	state, errText := "ok", t.LastError
	mode := "async"
	if t.Sync {
		mode = "sync"
	}
	switch {
	case t.Fenced > 0 && !t.Quarantined && !t.Retrying:
		state = fmt.Sprintf("FENCED(%d)", t.Fenced)
		if errText == "" {
			errText = "last fenced-out commit " + t.LastFencedGTID + ": committed at its origin without the table's ownership, not applied"
		}
	case t.Quarantined:
		state, errText = "QUARANTINED", t.QuarantineReason
	case t.Retrying:
		state = "retrying"
	}
	if errText == "" && table == "-" {
		errText = s.LastError
	}
	if len(errText) > 120 {
		errText = errText[:117] + "..."
	}
	return strings.Join([]string{s.Local, s.Origin, table, mode, state, fmt.Sprint(t.LagMs), fmt.Sprint(s.Pending),
		fmt.Sprint(t.Rows), fmt.Sprint(t.Conflicts), fmt.Sprint(t.Refused), fmt.Sprint(t.Skipped), errText}, "\t")
}
