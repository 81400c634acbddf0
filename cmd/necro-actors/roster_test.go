package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	necroredis "github.com/necrostack/necro/backend/redis"
	"github.com/necrostack/necro/internal/redistest"
)

// waitDrained waits until the default group has read every entry and holds none
// pending, three times in a row.
func waitDrained(t *testing.T, srv *redistest.Server, limit time.Duration) {
	t.Helper()
	a, err := necroredis.OpenAdmin(t.Context(), necroredis.Config{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	deadline, calm := time.Now().Add(limit), 0
	for calm < 3 {
		if time.Now().After(deadline) {
			in, _ := a.Inspect(t.Context())
			t.Fatalf("the group did not drain within %v: %+v", limit, in.Groups)
		}
		time.Sleep(200 * time.Millisecond)
		in, err := a.Inspect(t.Context())
		if err == nil && len(in.Groups) == 1 && in.Groups[0].Pending == 0 && in.Groups[0].Lag == 0 {
			calm++
		} else {
			calm = 0
		}
	}
}

// An ETL worker and a trading worker share a group, as two versions of a service do
// during a deploy: every ETL chain completes, whichever worker pulls its events, and
// inspect shows both workers with what they serve.
func TestWorkersOfDifferentAppsShareAGroup(t *testing.T) {
	srv := redistest.Start(t, redistest.Config{})
	etl := newCLI()
	etlCode := etl.start(t, "worker", "etl", "--redis", srv.URL(), "--consumer", "etl-1", "--json", "--no-random-failures")
	if l := etl.stdout.nextJSON(t); l["event"] != "ready" {
		t.Fatalf("etl: first line %v, want ready\n%s", l, etl.output())
	}
	trading := newCLI()
	tradingCode := trading.start(t, "worker", "trading", "--redis", srv.URL(), "--consumer", "trading-1", "--no-random-failures")
	if l := trading.stdout.nextJSON(t); l["event"] != "ready" {
		t.Fatalf("trading: first line %v, want ready\n%s", l, trading.output())
	}

	insp := newCLI()
	if got := insp.run(t, "inspect", "--redis", srv.URL()); got != exitOK {
		t.Fatalf("inspect: exit %d\n%s", got, insp.output())
	}
	for _, want := range []string{"etl-1", "trading-1", "ExtractCSV", "ETL_START", "MatchingEngine"} {
		if !strings.Contains(insp.stdout.String(), want) {
			t.Errorf("inspect does not show %q:\n%s", want, insp.stdout.String())
		}
	}

	const chains = 200
	lines := make([]string, chains)
	for i := range lines {
		lines[i] = fmt.Sprintf(`{"event_type": "ETL_START", "payload": {"csv_data": "a,b\n%d,2\n", "source_name": "s%d.csv"}}`, i, i)
	}
	emit(t, srv, lines...)
	waitDrained(t, srv, 60*time.Second)

	etl.signals <- sigterm
	trading.signals <- sigterm
	if got := etlCode.wait(t, etl); got != exitOK {
		t.Fatalf("etl worker: exit %d\n%s", got, etl.output())
	}
	if got := tradingCode.wait(t, trading); got != exitOK {
		t.Fatalf("trading worker: exit %d\n%s", got, trading.output())
	}
	etl.stdout.nextJSON(t) // draining
	stopped := etl.stdout.nextJSON(t)
	results, _ := stopped["results"].(map[string]any)
	if summaries, _ := results["summaries"].([]any); len(summaries) != chains {
		t.Errorf("the ETL worker completed %d chains, want %d\n%s", len(summaries), chains, etl.output())
	}
	trading.stdout.nextJSON(t) // draining
	st := trading.stdout.nextJSON(t)
	// Each chain ends with an ETL_COMPLETE that no organ listens to, whichever worker
	// pulls it: that, and nothing else, is unrouted.
	if unrouted := stopped["unrouted"].(float64) + st["unrouted"].(float64); unrouted != chains || st["handed_off"] == 0.0 {
		t.Errorf("%v events acked as unrouted, want %d (the ETL_COMPLETE of each chain); the trading worker handed off %v, want some\n%s",
			unrouted, chains, st["handed_off"], trading.output())
	}
}
