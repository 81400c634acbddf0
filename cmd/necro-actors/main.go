// Command necro-actors runs necro's bundled apps and workers, and is the operator's
// tool for a Redis stream: emit events, inspect the group, handle dead letters, and
// measure throughput.
//
//	necro-actors run <app> [--redis URL]          run a bundled app to completion
//	necro-actors worker <app> --redis URL         serve an app from Redis until SIGTERM
//	necro-actors emit --type T --payload JSON     enqueue events (or JSON lines on stdin)
//	necro-actors inspect                          the stream, its groups, consumers and dead letters
//	necro-actors dlq list|show|replay|purge       dead letters
//	necro-actors bench --workload chain|fanout    throughput and latency
//	necro-actors version
//
// Exit codes: 0 done; 1 the work failed; 2 usage error, a Redis URL that cannot work
// included (no host, a bad port, a database the server lacks); 3 Redis unreachable; 4
// Redis refused the credentials or a command the store needs, or the TLS handshake
// failed; 5 stopped at once with work left pending (a second signal during a drain).
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	goredis "github.com/redis/go-redis/v9"
)

func main() {
	// Signals go to the command: a worker drains on the first and stops at once on the
	// second, which a context canceled once cannot say.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	// go-redis logs dial failures to the process's stderr in a format of its own; the
	// Redis backend reports them through the command's JSON logger already.
	goredis.SetLogger(discardRedisLog{})
	env := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, signals: sigs, getenv: os.Getenv}
	os.Exit(run(context.Background(), os.Args[1:], env))
}

// discardRedisLog drops go-redis's own log lines.
type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}

// env is what a command may touch of the outside world; tests give their own.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	signals        <-chan os.Signal
	getenv         func(string) string
}

// A command is one subcommand: it parses its own flags from args.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, e *env) error
}

// commands lists the subcommands in the order the help shows them.
func commands() []command {
	return []command{
		{"run", "run a bundled app to completion (in memory, or on Redis with --redis)", cmdRun},
		{"worker", "serve a bundled app from Redis until SIGTERM/SIGINT, then drain", cmdWorker},
		{"emit", "enqueue events on a stream", cmdEmit},
		{"inspect", "show a stream: length, groups, consumers, pending, lag, dead letters", cmdInspect},
		{"dlq", "list, show, replay or purge dead letters", cmdDLQ},
		{"bench", "measure a workload's throughput and latency", cmdBench},
		{"version", "print the version", cmdVersion},
	}
}

// run is the whole program: it returns the exit code.
func run(ctx context.Context, args []string, e *env) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(e.stderr)
		if len(args) == 0 {
			return exitUsage
		}
		return exitOK
	}
	for _, c := range commands() {
		if c.name == args[0] {
			return report(e, c.name, c.run(ctx, args[1:], e))
		}
	}
	fmt.Fprintf(e.stderr, "necro-actors: unknown command %q\n\n", args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "usage: necro-actors <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Run 'necro-actors <command> -h' for a command's flags. Exit codes: 0 done, 1 the work failed,")
	fmt.Fprintln(w, "2 usage error, 3 Redis unreachable, 4 Redis auth, permission or TLS failure, 5 stopped with work left pending.")
}
