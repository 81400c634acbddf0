package app

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/necrostack/necro"
	"github.com/necrostack/necro/backend"
	"github.com/necrostack/necro/backend/memory"
	"github.com/necrostack/necro/spine"
	"github.com/necrostack/necro/supervision"
)

// testContext bounds a run, so that a Spine that never finishes fails the test in
// seconds rather than at the test binary's timeout; the sample takes a third of a second.
func testContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeoutCause(t.Context(), 20*time.Second, errors.New("the run did not finish within 20s"))
	t.Cleanup(cancel)
	return ctx
}

// A finished run: what the Spine counted, the dead letters, what Begin and Report
// printed (with the time line masked) and the results with their ids and times cleared.
type finished struct {
	stats spine.Stats
	dead  []backend.DeadLetter
	out   string
	res   Results
}

// timeLine is the one line of the report that depends on the clock.
var timeLine = regexp.MustCompile(`(?m)^  Time: \d+\.\d\ds \(\d+\.\d events/sec\)$`)

// runApp runs a to completion on the in-memory backend, as the standalone program does.
func runApp(t *testing.T, a *App) finished {
	t.Helper()
	ctx := testContext(t)
	q, err := memory.New(memory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = q.Close() }) // a test backend; nothing to flush
	sp, err := spine.New(q, a.Mounts(), a.Config(spine.Config{}))
	if err != nil {
		t.Fatalf("spine.New() = %v", err)
	}
	roots, err := a.Roots()
	if err != nil {
		t.Fatalf("Roots() = %v", err)
	}
	var out bytes.Buffer
	a.Begin(&out)
	if err := sp.Emit(ctx, roots...); err != nil {
		t.Fatalf("Emit() = %v", err)
	}
	start := time.Now()
	if err := sp.Run(ctx); err != nil {
		t.Fatalf("Run() = %v", err)
	}
	elapsed := time.Since(start)
	dead, err := q.DeadLetters(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	st := sp.Stats()
	if err := a.Report(&out, st, dead, elapsed); err != nil {
		t.Fatalf("Report() = %v", err)
	}
	if !timeLine.MatchString(out.String()) {
		t.Errorf("the report has no time line:\n%s", out.String())
	}
	return finished{stats: st, dead: dead, out: timeLine.ReplaceAllString(out.String(), "  Time: <elapsed>"),
		res: cleared(t, a.Results())}
}

// cleared returns the results with the fields that change from run to run (event ids
// and times) emptied, after checking that they are set.
func cleared(t *testing.T, v any) Results {
	t.Helper()
	res, ok := v.(Results)
	if !ok {
		t.Fatalf("Results() is a %T, want Results", v)
	}
	for i := range res.Deliveries {
		d := &res.Deliveries[i]
		for _, at := range []string{d.DeliveredAt, d.RecordedAt} {
			if _, err := time.Parse(necro.TimestampLayout, at); err != nil {
				t.Errorf("delivery %+v: time %q: %v", *d, at, err)
			}
		}
		if len(d.EventID) != 36 {
			t.Errorf("delivery %+v: event id %q is not a UUID", *d, d.EventID)
		}
		d.EventID, d.DeliveredAt, d.RecordedAt = "", "", ""
	}
	return res
}

func mustNew(t *testing.T, opts Options) *App {
	t.Helper()
	a, err := New(opts)
	if err != nil {
		t.Fatalf("New(%+v) = %v", opts, err)
	}
	return a
}

// wantSampleOut is the output for the bundled sample with random failures off. Events:
// 5 requests, 5 validated, 9 sends (email 3, sms 2, push 4), 8 deliveries (user_003's
// SMS goes to a blocked number and is dead-lettered at once) and 8 DELIVERY_COMPLETED:
// 35 processed, of which all but the 5 requests were emitted.
const wantSampleOut = `============================================================
NOTIFICATION PIPELINE
============================================================

Processing 5 notifications...

  → user_001: [email, sms, push] - Your order #12345 has shipped!...
  → user_002: [email] - Weekly digest: 5 new updates...
  → user_003: [sms, push] - Security alert: New login detected...
  → user_001: [push] - Payment received - $99.99...
  → user_002: [email, push] - Your subscription renews tomorrow...

Processing...

============================================================
RESULTS
============================================================
  Events processed: 35
  Events emitted: 30
  Time: <elapsed>
  Handler errors: {SmsOrgan: 1}

  DLQ: 1 failed events
    - SMS_SEND_REQUESTED: SMS delivery permanently failed: recipient is bloc

  Deliveries: 8
`

// wantSampleResults are the sample's results, failures off; with them on, only the
// attempts of a retried email change.
var wantSampleResults = Results{
	Requests:  5,
	Validated: 5,
	Rejected:  []Rejection{},
	Sends:     map[string]int{"email": 3, "sms": 2, "push": 4},
	Deliveries: []AuditRecord{
		{Request: 1, UserID: "user_001", Channel: "email", Attempts: 1},
		{Request: 1, UserID: "user_001", Channel: "sms"},
		{Request: 1, UserID: "user_001", Channel: "push"},
		{Request: 2, UserID: "user_002", Channel: "email", Attempts: 1},
		{Request: 3, UserID: "user_003", Channel: "push"},
		{Request: 4, UserID: "user_001", Channel: "push"},
		{Request: 5, UserID: "user_002", Channel: "email", Attempts: 1},
		{Request: 5, UserID: "user_002", Channel: "push"},
	},
}

func TestSampleRun(t *testing.T) {
	got := runApp(t, mustNew(t, Options{}))
	if got.out != wantSampleOut {
		t.Errorf("Begin and Report printed:\n%s\nwant:\n%s", got.out, wantSampleOut)
	}
	st := got.stats
	if st.Processed != 35 || st.Emitted != 30 || st.Retried != 0 || st.DeadLettered != 1 || st.Unrouted != 8 {
		t.Errorf("Stats: processed %d, emitted %d, retried %d, dead-lettered %d, unrouted %d; want 35, 30, 0, 1, 8",
			st.Processed, st.Emitted, st.Retried, st.DeadLettered, st.Unrouted)
	}
	if want := map[string]int64{"SmsOrgan": 1}; !maps.Equal(st.HandlerErrors, want) {
		t.Errorf("HandlerErrors = %v, want %v", st.HandlerErrors, want)
	}
	if len(got.dead) != 1 {
		t.Fatalf("dead letters = %v, want user_003's SMS", got.dead)
	}
	dl := got.dead[0]
	var sms map[string]any
	if err := dl.Event.DecodePayload(&sms); err != nil {
		t.Fatal(err)
	}
	if dl.Event.Type() != typeSMSRequested || dl.Organ != "SmsOrgan" || dl.Attempts != 1 ||
		dl.Reason != supervision.ReasonPermanent || dl.Error != errBlocked.Error() || sms["phone"] != "+1555000000" {
		t.Errorf("dead letter: %s in %s after %d attempts (%s): %s, payload %v; want the SMS to +1555000000 in SmsOrgan after 1 attempt (%s): %s",
			dl.Event.Type(), dl.Organ, dl.Attempts, dl.Reason, dl.Error, sms, supervision.ReasonPermanent, errBlocked)
	}
	if !reflect.DeepEqual(got.res, wantSampleResults) {
		t.Errorf("Results() = %+v\nwant %+v", got.res, wantSampleResults)
	}
}

// TestSampleCSVIsTheJSONSample checks that the two bundled inputs hold the same
// requests, so that -file with either prints the same results.
func TestSampleCSVIsTheJSONSample(t *testing.T) {
	fromJSON := mustNew(t, Options{})
	data, err := samples.ReadFile("sample_notifications.csv")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "sample.csv")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	fromCSV := mustNew(t, Options{Input: path})
	if len(fromCSV.warnings) != 0 {
		t.Errorf("CSV warnings = %q, want none", fromCSV.warnings)
	}
	decode := func(reqs []json.RawMessage) []map[string]any {
		var out []map[string]any
		for _, raw := range reqs {
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			out = append(out, m)
		}
		return out
	}
	if j, c := decode(fromJSON.requests), decode(fromCSV.requests); !reflect.DeepEqual(j, c) {
		t.Errorf("CSV requests %v\ndiffer from the JSON ones %v", c, j)
	}
}

// TestRandomFailuresAreRetried runs the sample with the seed's random failures on. With
// seed 1 the fifth request's email fails its first attempt: the Spine retries it and
// the second attempt delivers it, where the seed's Spine would have dead-lettered it.
// The same seed repeats the same run.
func TestRandomFailuresAreRetried(t *testing.T) {
	opts := Options{Seed: 1, RandomFailures: true}
	first := runApp(t, mustNew(t, opts))
	st := first.stats
	if want := map[string]int64{"EmailOrgan": 1, "SmsOrgan": 1}; !maps.Equal(st.HandlerErrors, want) {
		t.Errorf("HandlerErrors = %v, want %v", st.HandlerErrors, want)
	}
	// One more delivery than without failures: the retried email.
	if st.Processed != 36 || st.Emitted != 30 || st.Retried != 1 || st.DeadLettered != 1 {
		t.Errorf("Stats: processed %d, emitted %d, retried %d, dead-lettered %d; want 36, 30, 1, 1",
			st.Processed, st.Emitted, st.Retried, st.DeadLettered)
	}
	for _, line := range []string{"  Handler errors: {EmailOrgan: 1, SmsOrgan: 1}\n  Retries: 1\n", "  Deliveries: 8\n"} {
		if !strings.Contains(first.out, line) {
			t.Errorf("the report lacks %q:\n%s", line, first.out)
		}
	}
	want := wantSampleResults
	want.Deliveries = slices.Clone(want.Deliveries)
	want.Deliveries[6].Attempts = 2
	if !reflect.DeepEqual(first.res, want) {
		t.Errorf("Results() = %+v\nwant %+v", first.res, want)
	}

	again := runApp(t, mustNew(t, opts))
	if again.out != first.out || !reflect.DeepEqual(again.res, first.res) {
		t.Errorf("the same seed gave another run:\n%s%+v\nthen:\n%s%+v", first.out, first.res, again.out, again.res)
	}
}

// TestEmailDeadLetteredAfterLastAttempt makes every email attempt fail: each email is
// tried three times and then dead-lettered with its last error.
func TestEmailDeadLetteredAfterLastAttempt(t *testing.T) {
	a := mustNew(t, Options{RandomFailures: true})
	a.failureChance = func(int) float64 { return 1 }
	got := runApp(t, a)
	st := got.stats
	if want := map[string]int64{"EmailOrgan": 9, "SmsOrgan": 1}; !maps.Equal(st.HandlerErrors, want) {
		t.Errorf("HandlerErrors = %v, want %v", st.HandlerErrors, want)
	}
	if st.Retried != 6 || st.DeadLettered != 4 {
		t.Errorf("Stats: retried %d, dead-lettered %d; want 6 (2 per email) and 4", st.Retried, st.DeadLettered)
	}
	var emails []string
	for _, dl := range got.dead {
		if dl.Organ != "EmailOrgan" {
			continue
		}
		if dl.Attempts != maxAttempts || dl.Reason != supervision.ReasonExhausted {
			t.Errorf("email dead letter after %d attempts (%s), want %d (%s)", dl.Attempts, dl.Reason, maxAttempts, supervision.ReasonExhausted)
		}
		emails = append(emails, dl.Error)
	}
	slices.Sort(emails)
	want := []string{
		"SMTP connection failed for alice@example.com (attempt 3)",
		"SMTP connection failed for bob@example.com (attempt 3)",
		"SMTP connection failed for bob@example.com (attempt 3)",
	}
	if !slices.Equal(emails, want) {
		t.Errorf("email dead letters = %q, want %q", emails, want)
	}
	if !strings.Contains(got.out, "  DLQ: 4 failed events\n") || !strings.Contains(got.out, "  Deliveries: 5\n") {
		t.Errorf("the report lacks the 4 dead letters or the 5 deliveries (1 SMS, 4 push):\n%s", got.out)
	}
}

// handle calls one organ directly, as its actor would.
func handle(t *testing.T, f necro.OrganFunc, typ string, payload any) ([]necro.Event, error) {
	t.Helper()
	ev, err := necro.NewEvent(typ, payload)
	if err != nil {
		t.Fatal(err)
	}
	return f(t.Context(), ev)
}

func TestValidateOrgan(t *testing.T) {
	tests := []struct {
		name    string
		request string
		want    map[string]any // the payload emitted, without its time
	}{
		{"valid, trimmed", `{"user_id": " user_001 ", "channels": ["sms", "email"], "message": " Hi ", "priority": "low"}`,
			map[string]any{"user_id": "user_001", "channels": []any{"sms", "email"}, "message": "Hi", "priority": "low"}},
		{"priority defaults to normal", `{"user_id": "u", "channels": ["push"], "message": "m"}`,
			map[string]any{"user_id": "u", "channels": []any{"push"}, "message": "m", "priority": "normal"}},
		// The two invalid requests of the seed's generated demo list.
		{"empty message", `{"user_id": "user_001", "channels": ["email"], "message": "", "priority": "normal"}`,
			map[string]any{"user_id": "user_001", "reason": "message is required"}},
		{"unknown channel", `{"user_id": "user_002", "channels": ["telegram"], "message": "Test", "priority": "normal"}`,
			map[string]any{"user_id": "user_002", "reason": "invalid channels: telegram"}},
		{"nothing at all", `{}`,
			map[string]any{"user_id": "unknown", "reason": "user_id is required; at least one channel is required; message is required"}},
		{"blank and null", `{"user_id": "  ", "channels": [], "message": null, "priority": null}`,
			map[string]any{"user_id": "unknown", "reason": "user_id is required; at least one channel is required; message is required; invalid priority: null"}},
		{"priorities are lower case", `{"user_id": "u", "channels": ["sms"], "message": "m", "priority": "HIGH"}`,
			map[string]any{"user_id": "u", "reason": "invalid priority: HIGH"}},
		{"invalid channels, each once", `{"user_id": "u", "channels": ["fax", "email", 3, "fax"], "message": "m"}`,
			map[string]any{"user_id": "u", "reason": "invalid channels: 3, fax"}},
		// Values on which the seed's handler crashed.
		{"values of the wrong type", `{"user_id": 42, "channels": "email", "message": ["m"], "priority": 1}`,
			map[string]any{"user_id": "unknown", "reason": "user_id must be a string; channels must be a list, got email; message must be a string; invalid priority: 1"}},
	}
	a := mustNew(t, Options{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := handle(t, a.validate, typeRequested, json.RawMessage(tt.request))
			if err != nil || len(out) != 1 {
				t.Fatalf("validate(%s) = %v, %v; want one event", tt.request, out, err)
			}
			got := out[0].Payload()
			wantType, stamp := typeValidated, "validated_at"
			if _, rejected := tt.want["reason"]; rejected {
				wantType, stamp = typeFailed, "failed_at"
				if got["original_event_id"] == "" {
					t.Errorf("no original_event_id in %v", got)
				}
				delete(got, "original_event_id")
			}
			if _, err := time.Parse(necro.TimestampLayout, fmt.Sprint(got[stamp])); err != nil {
				t.Errorf("%s: %v", stamp, err)
			}
			delete(got, stamp)
			if out[0].Type() != wantType || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("validate(%s) emitted %s %v\nwant %s %v", tt.request, out[0].Type(), got, wantType, tt.want)
			}
		})
	}
}

func TestRouterOrgan(t *testing.T) {
	a := mustNew(t, Options{})
	long := strings.Repeat("é", 300) // 2 bytes each: the limits count characters
	out, err := handle(t, a.route, typeValidated, map[string]any{
		"user_id": "user_003", "channels": []string{"push", "email", "sms"}, "message": long, "priority": "critical"})
	if err != nil {
		t.Fatalf("route() = %v", err)
	}
	want := []struct {
		typ     string
		payload map[string]any
	}{
		{typePushRequested, map[string]any{"user_id": "user_003", "device_token": "fcm_token_charlie_def",
			"title": "New Notification", "body": long[:2*pushMaxChars], "priority": "critical"}},
		{typeEmailRequested, map[string]any{"user_id": "user_003", "email": "charlie@example.com",
			"subject": "[CRITICAL] Notification", "body": long, "priority": "critical"}},
		{typeSMSRequested, map[string]any{"user_id": "user_003", "phone": "+1555000000",
			"message": long[:2*smsMaxChars], "priority": "critical"}},
	}
	if len(out) != len(want) {
		t.Fatalf("route() emitted %d events, want %d", len(out), len(want))
	}
	for i, w := range want {
		if got := out[i].Payload(); out[i].Type() != w.typ || !reflect.DeepEqual(got, w.payload) {
			t.Errorf("event %d: %s %v\nwant %s %v", i, out[i].Type(), got, w.typ, w.payload)
		}
	}

	out, err = handle(t, a.route, typeValidated, map[string]any{
		"user_id": "user_004", "channels": []string{"email"}, "message": "m", "priority": "low"})
	if err != nil || len(out) != 0 {
		t.Errorf("route() for a user without contacts = %v, %v; want nothing", out, err)
	}
	_, err = handle(t, a.route, typeValidated, map[string]any{"user_id": "user_001"})
	if !necro.IsPermanent(err) || err.Error() != "missing required fields: channels, message, priority" {
		t.Errorf("route() without fields = %v, want a permanent error naming them", err)
	}
	if want := map[string]int{"push": 1, "email": 1, "sms": 1}; !maps.Equal(a.sends, want) {
		t.Errorf("sends = %v, want %v", a.sends, want)
	}
}

func TestSmsOrgan(t *testing.T) {
	a := mustNew(t, Options{})
	out, err := handle(t, a.sendSMS, typeSMSRequested, map[string]any{"user_id": "u", "phone": "+1555123001", "message": "héllo"})
	if err != nil || len(out) != 1 || out[0].Type() != typeSMSDelivered {
		t.Fatalf("sendSMS() = %v, %v; want SMS_DELIVERED", out, err)
	}
	if got := out[0].Payload()["message_length"]; got != json.Number("5") {
		t.Errorf("message_length = %v, want 5 characters", got)
	}
	for _, phone := range []string{"+1555000000", "+1555000001"} {
		_, err := handle(t, a.sendSMS, typeSMSRequested, map[string]any{"user_id": "u", "phone": phone, "message": "m"})
		if !necro.IsPermanent(err) || !errors.Is(err, errBlocked) {
			t.Errorf("sendSMS(%s) = %v, want the permanent %v", phone, err, errBlocked)
		}
	}
}

// TestLatencyHonorsCtx checks that the simulated calls end when their ctx does: a
// handler timeout then stops them instead of abandoning them.
func TestLatencyHonorsCtx(t *testing.T) {
	a := mustNew(t, Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	for name, f := range map[string]necro.OrganFunc{"sms": a.sendSMS, "email": a.sendEmail, "push": a.sendPush} {
		ev, err := necro.NewEvent("X", map[string]any{"user_id": "u", "phone": "p", "message": "m", "email": "e",
			"subject": "s", "device_token": "d", "title": "t", "body": "b", "priority": "low"})
		if err != nil {
			t.Fatal(err)
		}
		if out, err := f(ctx, ev); !errors.Is(err, context.Canceled) || out != nil {
			t.Errorf("%s with a canceled ctx = %v, %v; want %v", name, out, err, context.Canceled)
		}
	}
}

func TestPushPayloadSize(t *testing.T) {
	// Python: len(str({'to': 'fcm_token_alice_xyz', 'notification': {'title': 'New
	// Notification', 'body': 'Your order #12345 has shipped!'}, 'data': {'user_id':
	// 'user_001', 'priority': 'high'}})) is 171.
	if got := pushPayloadSize("fcm_token_alice_xyz", "New Notification", "Your order #12345 has shipped!", "user_001", "high"); got != 171 {
		t.Errorf("pushPayloadSize() = %d, want 171", got)
	}
	// The values are Python's repr() of each string.
	for in, want := range map[string]string{
		`it's`:                           `"it's"`,
		`say "hi"`:                       `'say "hi"'`,
		`both ' and "`:                   `'both \' and "'`,
		"tab\there":                      `'tab\there'`,
		"nl\n":                           `'nl\n'`,
		`back\slash`:                     `'back\\slash'`,
		"café \u00a0 \u200b 🔥 \x7f \x01": `'café \xa0 \u200b 🔥 \x7f \x01'`,
		"\u2028":                         `'\u2028'`,
	} {
		if got := pyStr(in); got != want {
			t.Errorf("pyStr(%q) = %s, want %s", in, got, want)
		}
	}
}

func TestAuditOrgan(t *testing.T) {
	a := mustNew(t, Options{})
	ev, err := necro.NewEvent(typeEmailDelivered, map[string]any{"user_id": "u", "attempts": 2, "delivered_at": "then"})
	if err != nil {
		t.Fatal(err)
	}
	out, err := a.record(t.Context(), ev)
	if err != nil || len(out) != 1 {
		t.Fatalf("record() = %v, %v; want DELIVERY_COMPLETED", out, err)
	}
	want := map[string]any{"user_id": "u", "channel": "email", "status": "delivered", "audit_id": "audit_" + ev.ID()[:8]}
	if got := out[0].Payload(); out[0].Type() != typeCompleted || !reflect.DeepEqual(got, want) {
		t.Errorf("record() emitted %s %v, want %s %v", out[0].Type(), got, typeCompleted, want)
	}
	if len(a.audit) != 1 || a.audit[0].Attempts != 2 || a.audit[0].DeliveredAt != "then" || a.audit[0].EventID != ev.ID() {
		t.Errorf("audit log = %+v", a.audit)
	}
	if _, err := handle(t, a.record, typePushDelivered, map[string]any{}); !necro.IsPermanent(err) || len(a.audit) != 1 {
		t.Errorf("record() without a user = %v with %d records; want a permanent error and no record", err, len(a.audit))
	}
}

func writeFile(t *testing.T, name, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name, file, text, want string
	}{
		{"unsupported extension", "requests.txt", "{}", `unsupported format ".txt"`},
		{"not JSON", "requests.json", `{"notifications": [`, "unexpected end of JSON input"},
		{"wrong shape", "requests.json", `{"requests": []}`, `"notifications" list`},
		{"not an object", "requests.json", `[{"user_id": "u"}, "hello"]`, "notification 2 is not a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeFile(t, tt.file, tt.text)
			_, err := New(Options{Input: path})
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New(%s holding %q) = %v, want an error naming the file and %q", tt.file, tt.text, err, tt.want)
			}
		})
	}
	missing := filepath.Join(t.TempDir(), "missing.json")
	if _, err := New(Options{Input: missing}); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("New(missing file) = %v, want a not-exist error naming it", err)
	}
}

func TestEmptyCSV(t *testing.T) {
	a := mustNew(t, Options{Input: writeFile(t, "empty.CSV", "")})
	if roots, _ := a.Roots(); len(roots) != 0 || len(a.warnings) != 0 {
		t.Errorf("an empty CSV gave %v and warnings %q, want no requests", roots, a.warnings)
	}
}

func TestJSONList(t *testing.T) {
	a := mustNew(t, Options{Input: writeFile(t, "r.json", `[{"user_id": "u", "channels": ["push"], "message": "m"}]`)})
	if roots, _ := a.Roots(); len(roots) != 1 || roots[0].Type() != typeRequested {
		t.Errorf("Roots() = %v, want one NOTIFICATION_REQUESTED", roots)
	}
}

func TestCSVLoader(t *testing.T) {
	path := writeFile(t, "requests.csv", "\ufeffuser_id,channels,message,priority\n"+
		",email,no user,high\n"+
		"u1,email,,high\n"+
		"u2,,no channels,high\n"+
		"u3, | ,blank channels,high\n"+
		"u4, sms | push ,\"quoted, with a comma\",HIGH\n"+
		"u5,email,short row\n"+
		"u6,push,odd priority,urgent,extra\n")
	a := mustNew(t, Options{Input: path})
	wantWarnings := []string{
		"Warning: Skipping row 2: missing user_id",
		"Warning: Skipping row 3: missing message",
		"Warning: Skipping row 4: missing channels",
		"Warning: Skipping row 5: no valid channels",
	}
	if !slices.Equal(a.warnings, wantWarnings) {
		t.Errorf("warnings = %q, want %q", a.warnings, wantWarnings)
	}
	var got []string
	for _, raw := range a.requests {
		got = append(got, string(raw))
	}
	want := []string{
		`{"user_id":"u4","channels":["sms","push"],"message":"quoted, with a comma","priority":"high"}`,
		`{"user_id":"u5","channels":["email"],"message":"short row","priority":"normal"}`,
		`{"user_id":"u6","channels":["push"],"message":"odd priority","priority":"normal"}`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("requests = %q\nwant %q", got, want)
	}
	var out bytes.Buffer
	a.Begin(&out)
	wantStart := "📂 Loading from: " + path + "\n\n" + strings.Join(wantWarnings, "\n") + "\n" + strings.Repeat("=", 60)
	if !strings.HasPrefix(out.String(), wantStart) {
		t.Errorf("Begin() printed:\n%s\nwant it to start with:\n%s", out.String(), wantStart)
	}
}

func TestBeginQuietAndLong(t *testing.T) {
	var out bytes.Buffer
	mustNew(t, Options{Quiet: true}).Begin(&out)
	if out.Len() != 0 {
		t.Errorf("Begin() with Quiet printed %q, want nothing", out.String())
	}
	a, err := NewStress(Options{Seed: 3}, maxListed+1)
	if err != nil {
		t.Fatal(err)
	}
	out.Reset()
	a.Begin(&out)
	want := "🚀 STRESS TEST: 21 notifications\n\n" + strings.Repeat("=", 60) + "\nNOTIFICATION PIPELINE\n" +
		strings.Repeat("=", 60) + "\n\nProcessing 21 notifications...\n\n\nProcessing...\n"
	if out.String() != want {
		t.Errorf("Begin() for 21 requests printed:\n%q\nwant (no line per request):\n%q", out.String(), want)
	}
}

func TestStress(t *testing.T) {
	if a, err := NewStress(Options{Input: "x.json"}, 1); err == nil {
		t.Errorf("NewStress() with an input file = %v, want an error", a)
	}
	if a, err := NewStress(Options{}, -1); err == nil {
		t.Errorf("NewStress(-1) = %v, want an error", a)
	}
	if got := stressRequests(0, 1); len(got) != 0 {
		t.Errorf("stressRequests(0) = %s, want none", got)
	}
	one, same, other := stressRequests(200, 7), stressRequests(200, 7), stressRequests(200, 8)
	if !reflect.DeepEqual(one, same) || reflect.DeepEqual(one, other) {
		t.Errorf("stressRequests: seed 7 twice gave different requests, or seeds 7 and 8 the same ones")
	}
	users := map[string]bool{}
	for _, raw := range one {
		var req csvRequest
		if err := json.Unmarshal(raw, &req); err != nil {
			t.Fatal(err)
		}
		users[req.UserID] = true
		if !validPriorities[req.Priority] || len(req.Channels) == 0 || !regexp.MustCompile(`^[A-Z][a-z]+ [a-z]+ #\d{4}$`).MatchString(req.Message) {
			t.Errorf("stress request %s is not of the seed's shape", raw)
		}
	}
	for i := 1; i <= stressUsers; i++ {
		if !users[fmt.Sprintf("user_%03d", i)] {
			t.Errorf("200 stress requests never picked user_%03d", i)
		}
	}
	if len(users) != stressUsers {
		t.Errorf("stress users = %v, want user_001 to user_019", slices.Sorted(maps.Keys(users)))
	}
}

// TestStressRunLosesNothing runs random requests and checks, on the results, that every
// send ends delivered or dead-lettered, with random failures on.
func TestStressRunLosesNothing(t *testing.T) {
	a, err := NewStress(Options{Seed: 11, RandomFailures: true}, 60)
	if err != nil {
		t.Fatal(err)
	}
	got := runApp(t, a)
	res := got.res
	if res.Requests != 60 || res.Validated != 60 || len(res.Rejected) != 0 {
		t.Errorf("results: %d requests, %d validated, rejected %v; want 60, 60, none", res.Requests, res.Validated, res.Rejected)
	}
	sends := 0
	for _, n := range res.Sends {
		sends += n
	}
	if sends == 0 || len(res.Deliveries)+len(got.dead) != sends {
		t.Errorf("%d sends, %d delivered and %d dead-lettered; want every send to end once", sends, len(res.Deliveries), len(got.dead))
	}
	for _, dl := range got.dead {
		if dl.Organ != "SmsOrgan" {
			t.Errorf("dead letter in %s: %s; only blocked SMS should be (emails are retried)", dl.Organ, dl.Error)
		}
	}
	if got.stats.Unrouted != int64(len(res.Deliveries)) {
		t.Errorf("Unrouted = %d, want one DELIVERY_COMPLETED per delivery (%d)", got.stats.Unrouted, len(res.Deliveries))
	}
}

func TestConfig(t *testing.T) {
	base := spine.Config{MaxSteps: 1, HandlerFailure: spine.HandlerNack, Window: 7}
	got := mustNew(t, Options{}).Config(base)
	if got.MaxSteps != 5000 || got.HandlerFailure != spine.HandlerDeadLetter || got.EnqueueFailure != spine.EnqueueStore ||
		got.Retry.MaxAttempts != 3 || got.Retry.Backoff.Base != 50*time.Millisecond || got.Window != 7 {
		t.Errorf("Config(%+v) = %+v; want the seed's settings over the base", base, got)
	}
	var names []string
	for _, m := range mustNew(t, Options{}).Mounts() {
		names = append(names, m.Name)
	}
	if want := []string{"ValidateOrgan", "RouterOrgan", "EmailOrgan", "SmsOrgan", "PushOrgan", "AuditOrgan"}; !slices.Equal(names, want) {
		t.Errorf("Mounts() = %q, want %q", names, want)
	}
}

func TestResultsJSON(t *testing.T) {
	b, err := json.Marshal(mustNew(t, Options{}).Results())
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"requests":5,"validated":0,"rejected":[],"sends":{},"deliveries":[]}`; string(b) != want {
		t.Errorf("Results() before a run = %s, want %s", b, want)
	}
}

func TestRequestLine(t *testing.T) {
	for in, want := range map[string]string{
		`{"user_id": "u", "channels": ["sms", 3], "message": "` + strings.Repeat("ab", 30) + `"}`: "  → u: [sms, 3] - " + strings.Repeat("ab", 20) + "...\n",
		`{}`: "  → ?: [] - ...\n",
		`{"user_id": null, "channels": "sms", "message": 0}`: "  → null: sms - ...\n",
		`{"user_id": 7, "message": ["x"]}`:                   "  → 7: [] - [\"x\"]...\n",
	} {
		if got := requestLine(json.RawMessage(in)); got != want {
			t.Errorf("requestLine(%s) = %q, want %q", in, got, want)
		}
	}
}
