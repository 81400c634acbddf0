//go:build necro_failpoint

package redis

import (
	"os"
	"strconv"
	"strings"
	"sync/atomic"
)

// Fault injection exists only in binaries built with the necro_failpoint tag, as the
// fault tests and the chaos harness build theirs; failpoint_off.go is what every other
// binary gets. There, the environment variable NECRO_REDIS_FAILPOINT arms a crash point
// for fault tests that run workers as processes. "before-settle:N" kills the process
// with SIGKILL as its N-th settle script is about to run: the handler's children exist
// only in memory. "after-settle:N" kills it right after the N-th settle script ran,
// before the reply is used.
var failpoint = parseFailpoint(os.Getenv("NECRO_REDIS_FAILPOINT"))

type crashPoint struct {
	where string
	n     int64
	seen  atomic.Int64
}

func parseFailpoint(s string) *crashPoint {
	where, n, ok := strings.Cut(s, ":")
	count, err := strconv.ParseInt(n, 10, 64)
	if !ok || err != nil || count < 1 || (where != "before-settle" && where != "after-settle") {
		return nil
	}
	return &crashPoint{where: where, n: count}
}

// hit crashes the process when the armed point is reached for the n-th time.
func (p *crashPoint) hit(where string) {
	if p == nil || p.where != where || p.seen.Add(1) != p.n {
		return
	}
	crash()
}
