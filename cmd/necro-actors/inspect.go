package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	necroredis "github.com/necrostack/necro/backend/redis"
)

// cmdInspect shows a stream as Redis sees it: its length and first and last entries,
// every consumer group with its pending entries and lag, every consumer with its
// pending entries and idle time, the dead letters and the delayed retries. It changes
// nothing: no group or consumer is created.
func cmdInspect(ctx context.Context, args []string, e *env) error {
	fs := newFlags(e, "inspect", "[--redis URL] [--stream NAME] [--json]")
	var rf redisFlags
	registerRedisFlags(fs, &rf, "redis", "redis-url-file", "stream")
	asJSON := fs.Bool("json", false, "print one JSON object")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usageErr("unexpected argument %q", pos[0])
	}
	a, err := openAdmin(ctx, e, &rf)
	if err != nil {
		return err
	}
	defer func() { _ = a.Close() }() // only reads were made: nothing is lost if closing fails
	in, err := a.Inspect(ctx)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, inspectionJSON(in))
	}
	return printInspection(e.stdout, in, time.Now())
}

// registerRedisFlags registers the named flags of rf only: an operator's command needs
// the URL and the stream, not the group and consumer of a worker.
func registerRedisFlags(fs *flag.FlagSet, rf *redisFlags, names ...string) {
	all := flag.NewFlagSet("", flag.ContinueOnError)
	rf.register(all)
	for _, name := range names {
		f := all.Lookup(name)
		fs.Var(f.Value, f.Name, f.Usage)
	}
}

// openAdmin connects to the stream of rf for a command that looks at it or repairs it:
// the operator's tools, which create no group and no consumer. Failures get exit codes
// as openRedis gives them.
func openAdmin(ctx context.Context, e *env, rf *redisFlags) (*necroredis.Admin, error) {
	cfg, err := rf.config(e)
	if err != nil {
		return nil, err
	}
	octx, cancel := context.WithTimeout(ctx, openTimeout)
	defer cancel()
	a, err := necroredis.OpenAdmin(octx, cfg)
	if err != nil {
		return nil, withCode(redisExitCode(err), err)
	}
	return a, nil
}

// The JSON form of an inspection: durations in milliseconds, -1 where Redis cannot
// tell, empty lists as [].
type (
	inspectOutput struct {
		Stream           string        `json:"stream"`
		Exists           bool          `json:"exists"`
		Length           int64         `json:"length"`
		FirstID          string        `json:"first_id"`
		LastID           string        `json:"last_id"`
		Groups           []groupOutput `json:"groups"`
		DeadLetterStream string        `json:"dead_letter_stream"`
		DeadLetters      int64         `json:"dead_letters"`
		Delayed          int64         `json:"delayed"`
		NextRetryAt      *time.Time    `json:"next_retry_at"` // null when no retry waits
		RedisVersion     string        `json:"redis_version"`
	}
	groupOutput struct {
		Name            string           `json:"name"`
		Pending         int64            `json:"pending"`
		LastDeliveredID string           `json:"last_delivered_id"`
		Lag             int64            `json:"lag"`
		Consumers       []consumerOutput `json:"consumers"`
		Workers         []workerOutput   `json:"workers"` // the group's roster
	}
	workerOutput struct {
		Name      string              `json:"name"`
		Live      bool                `json:"live"`
		SeenAgoMS int64               `json:"seen_ago_ms"` // since its last heartbeat
		Organs    map[string][]string `json:"organs"`      // organ → the event types it listens to
		Problem   string              `json:"problem,omitempty"`
	}
	consumerOutput struct {
		Name       string `json:"name"`
		Pending    int64  `json:"pending"`
		IdleMS     int64  `json:"idle_ms"`
		InactiveMS int64  `json:"inactive_ms"`
	}
)

func inspectionJSON(in necroredis.Inspection) inspectOutput {
	out := inspectOutput{Stream: in.Stream, Exists: in.Exists, Length: in.Length, FirstID: in.FirstID, LastID: in.LastID,
		Groups: []groupOutput{}, DeadLetterStream: in.DeadLetterStream, DeadLetters: in.DeadLetters, Delayed: in.Delayed,
		RedisVersion: in.ServerVersion}
	if !in.NextRetry.IsZero() {
		out.NextRetryAt = &in.NextRetry
	}
	for _, g := range in.Groups {
		gj := groupOutput{Name: g.Name, Pending: g.Pending, LastDeliveredID: g.LastDeliveredID, Lag: g.Lag, Consumers: []consumerOutput{},
			Workers: []workerOutput{}}
		for _, w := range g.Workers {
			wo := workerOutput{Name: w.Name, Live: w.Live, SeenAgoMS: w.Age.Milliseconds(), Organs: map[string][]string{}, Problem: w.Problem}
			for _, o := range w.Organs {
				wo.Organs[o.Organ] = o.Types
			}
			gj.Workers = append(gj.Workers, wo)
		}
		for _, c := range g.Consumers {
			inactive := int64(-1)
			if c.Inactive >= 0 {
				inactive = c.Inactive.Milliseconds()
			}
			gj.Consumers = append(gj.Consumers, consumerOutput{Name: c.Name, Pending: c.Pending, IdleMS: c.Idle.Milliseconds(), InactiveMS: inactive})
		}
		out.Groups = append(out.Groups, gj)
	}
	return out
}

// printInspection writes the inspection as a few aligned tables; now dates the next
// retry.
func printInspection(w io.Writer, in necroredis.Inspection, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	switch {
	case !in.Exists:
		fmt.Fprintf(tw, "stream\t%s\tdoes not exist\n", in.Stream)
	case in.Length == 0:
		fmt.Fprintf(tw, "stream\t%s\t0 entries\n", in.Stream)
	default:
		fmt.Fprintf(tw, "stream\t%s\t%s, %s … %s\n", in.Stream, plural(in.Length, "entry", "entries"), in.FirstID, in.LastID)
	}
	fmt.Fprintf(tw, "dead letters\t%s\t%d\n", in.DeadLetterStream, in.DeadLetters)
	if in.Delayed == 0 {
		fmt.Fprintf(tw, "delayed\t%s:delayed\t0 retries\n", in.Stream)
	} else {
		fmt.Fprintf(tw, "delayed\t%s:delayed\t%s, next due %s (in %s)\n", in.Stream, plural(in.Delayed, "retry", "retries"),
			in.NextRetry.Format(time.RFC3339), shortDuration(in.NextRetry.Sub(now)))
	}
	fmt.Fprintf(tw, "redis\t%s\t\n", in.ServerVersion)
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(in.Groups) == 0 {
		_, err := fmt.Fprintln(w, "\nno consumer groups")
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tCONSUMERS\tPENDING\tLAG\tLAST DELIVERED")
	for _, g := range in.Groups {
		lag := "?"
		if g.Lag >= 0 {
			lag = fmt.Sprint(g.Lag)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\n", g.Name, len(g.Consumers), g.Pending, lag, g.LastDeliveredID)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tCONSUMER\tPENDING\tIDLE\tINACTIVE")
	for _, g := range in.Groups {
		if len(g.Consumers) == 0 {
			fmt.Fprintf(tw, "%s\t(none)\t\t\t\n", g.Name)
		}
		for _, c := range g.Consumers {
			inactive := "-"
			if c.Inactive >= 0 {
				inactive = shortDuration(c.Inactive)
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", g.Name, c.Name, c.Pending, shortDuration(c.Idle), inactive)
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	return printWorkers(w, in.Groups)
}

// printWorkers writes the groups' rosters: each worker that announced itself, whether
// it is live, and what it serves, one organ per line.
func printWorkers(w io.Writer, groups []necroredis.GroupInfo) error {
	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "GROUP\tWORKER\tSTATE\tHEARTBEAT\tORGAN\tLISTENS TO")
	for _, g := range groups {
		if len(g.Workers) == 0 {
			fmt.Fprintf(tw, "%s\t(none announced)\t\t\t\t\n", g.Name)
		}
		for _, wk := range g.Workers {
			state := "gone"
			if wk.Live {
				state = "live"
			}
			if wk.Problem != "" {
				fmt.Fprintf(tw, "%s\t%s\t%s\t\t\t\n", g.Name, wk.Name, wk.Problem)
				continue
			}
			ago := shortDuration(wk.Age) + " ago"
			if len(wk.Organs) == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t(no organ)\t\n", g.Name, wk.Name, state, ago)
			}
			for i, o := range wk.Organs {
				if i == 0 {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", g.Name, wk.Name, state, ago, o.Organ, strings.Join(o.Types, ", "))
				} else {
					fmt.Fprintf(tw, "\t\t\t\t%s\t%s\n", o.Organ, strings.Join(o.Types, ", "))
				}
			}
		}
	}
	return tw.Flush()
}

// plural writes n and the word for n.
func plural(n int64, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}

// shortDuration rounds d for reading: milliseconds under a minute, seconds above.
func shortDuration(d time.Duration) string {
	if d < time.Minute && d > -time.Minute {
		return d.Round(time.Millisecond).String()
	}
	return d.Round(time.Second).String()
}
