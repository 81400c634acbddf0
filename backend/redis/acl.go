package redis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"

	goredis "github.com/redis/go-redis/v9"
)

// ErrNoPermission reports a Redis user that may not run a command the store needs, or
// may not touch one of its keys; the wrapping error names each of them.
var ErrNoPermission = errors.New("redis: permission denied")

// A need is one command the store runs, from Go or from its scripts (a script's
// commands run with the permissions of the user who runs it), in a form that changes
// nothing: it does nothing, or it fails after Redis has checked the permissions.
type need struct {
	command string // as an error names it: "XADD", "XGROUP CREATE"
	key     string // the key it touches; "" when none
	args    []any
}

// maxIdle is an idle time no pending entry reaches: a claim with it claims nothing.
const maxIdle = "9223372036854775807"

// needs lists every command the store runs, on each key it runs it on, for cfg. The
// commands that name a group name probe, a group that does not exist: they then fail
// with NOGROUP, after the permission check, and can change nothing of a real group;
// probe also names the enqueue marker and roster field that are checked, which do not
// exist either. The Admin's commands are not here: each of its operations needs its
// own, and reports Redis's refusal when it runs.
func needs(cfg Config, probe string) []need {
	stream, dlq, delayed := cfg.Stream, cfg.DeadLetterStream, cfg.Stream+":delayed"
	roster, marker := rosterKey(cfg.Stream, cfg.Group), cfg.Stream+":enqueue:"+probe
	group, consumer := probe, probe
	ns := []need{
		// Reading, settling and claiming (Go and the read, pending, settle, refresh,
		// hand-back, hand-off, adopt and leave scripts).
		{"XGROUP CREATE", stream, []any{"XGROUP", "CREATE", stream, group, "not-an-id", "MKSTREAM"}},
		{"XREADGROUP", stream, []any{"XREADGROUP", "GROUP", group, consumer, "COUNT", 1, "STREAMS", stream, "0"}},
		{"XACK", stream, []any{"XACK", stream, group, "0-0"}},
		{"XPENDING", stream, []any{"XPENDING", stream, group}},
		{"XCLAIM", stream, []any{"XCLAIM", stream, group, consumer, maxIdle, "0-0", "JUSTID"}},
		{"XGROUP DELCONSUMER", stream, []any{"XGROUP", "DELCONSUMER", stream, group, consumer}},
		{"XRANGE", stream, []any{"XRANGE", stream, "-", "+", "COUNT", 1}},
		{"XINFO GROUPS", stream, []any{"XINFO", "GROUPS", stream}},
		{"XADD", stream, []any{"XADD", stream, "0-0", "f", "v"}}, // refused: ids start above 0-0
		{"XLEN", stream, []any{"XLEN", stream}},
		{"EXISTS", stream, []any{"EXISTS", stream}},
		// Dead letters.
		{"XADD", dlq, []any{"XADD", dlq, "0-0", "f", "v"}},
		{"XLEN", dlq, []any{"XLEN", dlq}},
		{"XRANGE", dlq, []any{"XRANGE", dlq, "-", "+", "COUNT", 1}},
		// Retries waiting to be due (the settle and move scripts).
		{"ZADD", delayed, []any{"ZADD", delayed, "not-a-score", "m"}},
		{"ZRANGEBYSCORE", delayed, []any{"ZRANGEBYSCORE", delayed, "+inf", "+inf", "LIMIT", 0, 1}},
		{"ZRANGE", delayed, []any{"ZRANGE", delayed, 0, 0}},
		{"ZREM", delayed, []any{"ZREM", delayed, "necro-permission-check"}}, // members hold NULs; this one never is
		{"ZCARD", delayed, []any{"ZCARD", delayed}},
		// The marker an enqueued chunk leaves (the enqueue script, and Go deleting it).
		{"GET", marker, []any{"GET", marker}},
		{"SET", marker, []any{"SET", marker, "v", "XX"}}, // only if it exists: it does not
		{"DEL", marker, []any{"DEL", marker}},
		// The group's roster, which every worker's Spine announces itself on.
		{"TIME", "", []any{"TIME"}},
		{"HSET", roster, []any{"HSET", roster, "f", "v", "f2"}}, // refused: a field without a value
		{"HGETALL", roster, []any{"HGETALL", roster}},
		{"HDEL", roster, []any{"HDEL", roster, probe}},
		{"PEXPIRE", roster, []any{"PEXPIRE", roster, "not-a-number"}},
	}
	if cfg.TrimInterval != Off || cfg.Capacity > 0 {
		ns = append(ns, need{"XTRIM", stream, []any{"XTRIM", stream, "MINID", "0"}}) // nothing is below 0
	}
	if cfg.DeadLetterMaxLen > 0 {
		ns = append(ns, need{"XTRIM", dlq, []any{"XTRIM", dlq, "MINID", "0"}})
	}
	if cfg.ForgetConsumersAfter != Off {
		ns = append(ns, need{"XINFO CONSUMERS", stream, []any{"XINFO", "CONSUMERS", stream, group}})
	}
	// The scripts declare these keys between them; a script unknown to Redis fails with
	// NOSCRIPT, and "return 0" does nothing.
	const unknownScript = "0000000000000000000000000000000000000000"
	for _, k := range []string{stream, dlq, delayed, marker, roster} {
		ns = append(ns,
			need{"EVALSHA", k, []any{"EVALSHA", unknownScript, 1, k}},
			need{"EVAL", k, []any{"EVAL", "return 0", 1, k}})
	}
	return ns
}

// checkPermissions runs each command the store needs, in a form that changes nothing,
// and returns an error matching [ErrNoPermission] that names every command Redis
// refuses to user, and every key it may not touch with a command. It returns other
// errors only when Redis could not be asked.
func (b *Backend) checkPermissions(ctx context.Context, user string) error {
	var r [8]byte
	_, _ = rand.Read(r[:])
	ns := needs(b.cfg, "necro-permission-check-"+hex.EncodeToString(r[:]))
	if user == "" {
		user = "default"
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*goredis.Cmd, len(ns))
	for i, n := range ns {
		cmds[i] = pipe.Do(ctx, n.args...)
	}
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	var commands []string
	onKey := map[string][]string{}
	for i, c := range cmds {
		err := c.Err()
		switch {
		case err == nil || !strings.HasPrefix(err.Error(), "NOPERM"):
			if isNetwork(err) {
				return fmt.Errorf("redis: check permissions: %w", scrub(err, b.cfg.URL))
			}
		case !strings.Contains(err.Error(), "permissions to run"):
			// "no permissions to access one of the keys" (or "a key"): the command is
			// allowed, on other keys.
			onKey[ns[i].key] = appendNew(onKey[ns[i].key], ns[i].command)
		default:
			commands = appendNew(commands, ns[i].command)
		}
	}
	if len(commands) == 0 && len(onKey) == 0 {
		return nil
	}
	var parts []string
	if len(commands) > 0 {
		parts = append(parts, strings.Join(commands, ", "))
	}
	keys := make([]string, 0, len(onKey))
	for k := range onKey {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s on key %q", strings.Join(onKey[k], ", "), k))
	}
	return fmt.Errorf("%w: user %q lacks permission for %s", ErrNoPermission, user, strings.Join(parts, "; "))
}

// appendNew appends s to list unless list holds it already.
func appendNew(list []string, s string) []string {
	if slices.Contains(list, s) {
		return list
	}
	return append(list, s)
}

// isPermission reports an error of Redis refusing a command or a key to the user, as
// a client's command or inside a script.
func isPermission(err error) bool {
	if err == nil {
		return false
	}
	msg := err.Error()
	return strings.HasPrefix(msg, "NOPERM") || strings.Contains(msg, "The user executing the script can't")
}
