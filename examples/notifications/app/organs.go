package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/necrostack/necro"
)

// The event types of the pipeline, the seed's names.
const (
	typeRequested      = "NOTIFICATION_REQUESTED"
	typeValidated      = "NOTIFICATION_VALIDATED"
	typeFailed         = "NOTIFICATION_FAILED" // no organ listens to it, as in the seed
	typeEmailRequested = "EMAIL_SEND_REQUESTED"
	typeSMSRequested   = "SMS_SEND_REQUESTED"
	typePushRequested  = "PUSH_SEND_REQUESTED"
	typeEmailDelivered = "EMAIL_DELIVERED"
	typeSMSDelivered   = "SMS_DELIVERED"
	typePushDelivered  = "PUSH_DELIVERED"
	typeCompleted      = "DELIVERY_COMPLETED" // no organ listens to it, as in the seed
)

// validChannels are the channels a request may ask for.
var validChannels = map[string]bool{"email": true, "sms": true, "push": true}

// A contact is how the pipeline reaches a user on each channel.
type contact struct {
	email, phone, deviceToken string
}

// contacts is the seed's simulated user database. Any other user has no contacts, so
// RouterOrgan routes their requests nowhere.
var contacts = map[string]contact{
	"user_001": {"alice@example.com", "+1555123001", "fcm_token_alice_xyz"},
	"user_002": {"bob@example.com", "+1555123002", "fcm_token_bob_abc"},
	"user_003": {"charlie@example.com", "+1555000000", "fcm_token_charlie_def"}, // a blocked number
}

// blockedNumbers never receive an SMS: SmsOrgan fails permanently on them.
var blockedNumbers = map[string]bool{"+1555000000": true, "+1555000001": true}

// The seed's simulated latencies. SmsOrgan's is a blocking sleep in the seed, which
// stalled its whole event loop; here each organ is an actor of its own, so a wait
// holds up only that organ's next event, and it ends early when ctx does.
const (
	smtpConnectLatency = 50 * time.Millisecond
	smtpSendLatency    = 20 * time.Millisecond
	smsLatency         = 30 * time.Millisecond
	pushLatency        = 40 * time.Millisecond
)

// Length limits RouterOrgan applies, in characters, as the seed's slices do.
const (
	smsMaxChars  = 160
	pushMaxChars = 256
)

// errBlocked is SmsOrgan's failure for a blocked number, the seed's text.
var errBlocked = errors.New("SMS delivery permanently failed: recipient is blocked")

// validate is ValidateOrgan: it checks a request and emits NOTIFICATION_VALIDATED, or
// NOTIFICATION_FAILED naming every problem. The rules are the seed's: a non-blank
// user_id and message (both trimmed), a non-empty list of channels drawn from email,
// sms and push, and a priority among low, normal, high and critical (normal when
// absent). Where the seed's handler crashed on a value of the wrong type (a number as
// the user id, say), this one rejects the request and says why.
func (a *App) validate(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	p := ev.Payload()
	var problems []string
	userID, ok := text(p["user_id"])
	switch {
	case !ok:
		problems = append(problems, "user_id must be a string")
	case userID == "":
		problems = append(problems, "user_id is required")
	}
	channels, problem := checkChannels(p["channels"])
	if problem != "" {
		problems = append(problems, problem)
	}
	message, ok := text(p["message"])
	switch {
	case !ok:
		problems = append(problems, "message must be a string")
	case message == "":
		problems = append(problems, "message is required")
	}
	priority := "normal"
	if v, present := p["priority"]; present {
		s, isString := v.(string)
		if !isString || !validPriorities[s] {
			problems = append(problems, "invalid priority: "+show(v))
		} else {
			priority = s
		}
	}
	now := time.Now().UTC().Format(necro.TimestampLayout)

	if len(problems) > 0 {
		if userID == "" {
			userID = "unknown"
		}
		reason := strings.Join(problems, "; ")
		out, err := necro.NewEvent(typeFailed, map[string]any{
			"user_id": userID, "reason": reason, "original_event_id": ev.ID(), "failed_at": now,
		})
		if err != nil {
			return nil, necro.Permanent(err)
		}
		a.mu.Lock()
		a.rejected = append(a.rejected, Rejection{Request: a.seq[ev.Correlation()], UserID: userID, Reason: reason})
		a.mu.Unlock()
		a.log.InfoContext(ctx, "notification rejected", slog.String("user_id", userID), slog.String("reason", reason))
		return []necro.Event{out}, nil
	}
	out, err := necro.NewEvent(typeValidated, map[string]any{
		"user_id": userID, "channels": channels, "message": message, "priority": priority, "validated_at": now,
	})
	if err != nil {
		return nil, necro.Permanent(err)
	}
	a.mu.Lock()
	a.validated++
	a.mu.Unlock()
	a.log.InfoContext(ctx, "notification validated", slog.String("user_id", userID), slog.Any("channels", channels))
	return []necro.Event{out}, nil
}

// checkChannels returns the requested channels, or the problem with them.
func checkChannels(v any) (channels []string, problem string) {
	if falsy(v) {
		return nil, "at least one channel is required"
	}
	list, ok := v.([]any)
	if !ok {
		return nil, "channels must be a list, got " + show(v)
	}
	var invalid []string
	for _, item := range list {
		s, ok := item.(string)
		if !ok || !validChannels[s] {
			invalid = append(invalid, show(item))
			continue
		}
		channels = append(channels, s)
	}
	if len(invalid) > 0 {
		slices.Sort(invalid)
		return nil, "invalid channels: " + strings.Join(slices.Compact(invalid), ", ")
	}
	return channels, ""
}

// route is RouterOrgan: it looks the user up and emits, in the order of the requested
// channels, one EMAIL_, SMS_ or PUSH_SEND_REQUESTED per channel the user can be reached
// on. A user with no contacts gets nothing, as in the seed.
func (a *App) route(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	p := ev.Payload()
	if err := requireFields(p, "user_id", "channels", "message", "priority"); err != nil {
		return nil, err
	}
	userID, _ := p["user_id"].(string)
	channels, _ := p["channels"].([]any)
	message, _ := p["message"].(string)
	priority := p["priority"]
	label := "UNKNOWN"
	if priority != nil {
		label = strings.ToUpper(show(priority))
	}
	c, known := contacts[userID]
	if !known {
		a.log.InfoContext(ctx, "no contacts for the user; nothing routed", slog.String("user_id", userID))
		return nil, nil
	}
	var out []necro.Event
	var routed []string
	for _, item := range channels {
		var typ string
		var payload map[string]any
		ch, _ := item.(string)
		switch ch {
		case "email":
			typ, payload = typeEmailRequested, map[string]any{"user_id": userID, "email": c.email,
				"subject": "[" + label + "] Notification", "body": message, "priority": priority}
		case "sms":
			typ, payload = typeSMSRequested, map[string]any{"user_id": userID, "phone": c.phone,
				"message": head(message, smsMaxChars), "priority": priority}
		case "push":
			typ, payload = typePushRequested, map[string]any{"user_id": userID, "device_token": c.deviceToken,
				"title": "New Notification", "body": head(message, pushMaxChars), "priority": priority}
		default:
			continue
		}
		send, err := necro.NewEvent(typ, payload)
		if err != nil {
			return nil, necro.Permanent(err)
		}
		out = append(out, send)
		routed = append(routed, ch)
	}
	a.mu.Lock()
	for _, ch := range routed {
		a.sends[ch]++
	}
	a.mu.Unlock()
	a.log.InfoContext(ctx, "notification routed", slog.String("user_id", userID), slog.Any("channels", routed))
	return out, nil
}

// sendEmail is EmailOrgan: a simulated SMTP delivery. With random failures on, a first
// attempt fails with a 15% chance; the Spine retries it (the seed's Spine did not), and
// a later attempt always succeeds, as in the seed.
func (a *App) sendEmail(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	p := ev.Payload()
	if err := requireFields(p, "email", "subject", "user_id"); err != nil {
		return nil, err
	}
	attempt := ev.Attempt()
	if err := pause(ctx, smtpConnectLatency); err != nil {
		return nil, err
	}
	if a.emailFails(attempt) {
		return nil, fmt.Errorf("SMTP connection failed for %s (attempt %d)", show(p["email"]), attempt)
	}
	if err := pause(ctx, smtpSendLatency); err != nil {
		return nil, err
	}
	out, err := necro.NewEvent(typeEmailDelivered, map[string]any{
		"user_id": p["user_id"], "email": p["email"], "subject": p["subject"], "attempts": attempt,
		"delivered_at": time.Now().UTC().Format(necro.TimestampLayout),
	})
	if err != nil {
		return nil, necro.Permanent(err)
	}
	a.log.InfoContext(ctx, "email delivered", slog.Any("user_id", p["user_id"]), slog.Int("attempt", attempt))
	return []necro.Event{out}, nil
}

// emailFails draws whether an email attempt fails. It draws only when the chance is
// strictly between 0 and 1, so the draws are the first attempts', in queue order, and a
// run is reproducible from the seed whenever retries come back.
func (a *App) emailFails(attempt int) bool {
	if !a.opts.RandomFailures {
		return false
	}
	switch chance := a.failureChance(attempt); {
	case chance <= 0:
		return false
	case chance >= 1:
		return true
	default:
		a.rngMu.Lock()
		defer a.rngMu.Unlock()
		return a.rng.Float64() < chance
	}
}

// sendSMS is SmsOrgan: a simulated SMS gateway. A blocked number fails permanently, so
// the request is dead-lettered at once rather than retried.
func (a *App) sendSMS(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	p := ev.Payload()
	if err := requireFields(p, "phone", "message", "user_id"); err != nil {
		return nil, err
	}
	phone, _ := p["phone"].(string)
	message, ok := p["message"].(string)
	if !ok {
		return nil, necro.Permanent(fmt.Errorf("message must be a string, got %s", show(p["message"])))
	}
	if err := pause(ctx, smsLatency); err != nil {
		return nil, err
	}
	if blockedNumbers[phone] {
		return nil, necro.Permanent(errBlocked)
	}
	out, err := necro.NewEvent(typeSMSDelivered, map[string]any{
		"user_id": p["user_id"], "phone": phone, "message_length": utf8.RuneCountInString(message),
		"delivered_at": time.Now().UTC().Format(necro.TimestampLayout),
	})
	if err != nil {
		return nil, necro.Permanent(err)
	}
	a.log.InfoContext(ctx, "sms delivered", slog.Any("user_id", p["user_id"]))
	return []necro.Event{out}, nil
}

// sendPush is PushOrgan: a simulated FCM/APNs call that always succeeds. The payload
// size it reports is that of the seed, the length of the Python repr of the push
// message it would send.
func (a *App) sendPush(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	p := ev.Payload()
	if err := requireFields(p, "device_token", "title", "body", "user_id", "priority"); err != nil {
		return nil, err
	}
	if err := pause(ctx, pushLatency); err != nil {
		return nil, err
	}
	out, err := necro.NewEvent(typePushDelivered, map[string]any{
		"user_id": p["user_id"], "device_token": p["device_token"],
		"push_payload_size": pushPayloadSize(p["device_token"], p["title"], p["body"], p["user_id"], p["priority"]),
		"delivered_at":      time.Now().UTC().Format(necro.TimestampLayout),
	})
	if err != nil {
		return nil, necro.Permanent(err)
	}
	a.log.InfoContext(ctx, "push delivered", slog.Any("user_id", p["user_id"]))
	return []necro.Event{out}, nil
}

// pushPayloadSize is len(str(push_payload)) in the seed: the number of characters of
// the Python repr of {'to': ..., 'notification': {'title': ..., 'body': ...}, 'data':
// {'user_id': ..., 'priority': ...}}.
func pushPayloadSize(token, title, body, userID, priority any) int {
	s := "{'to': " + pyRepr(token) + ", 'notification': {'title': " + pyRepr(title) + ", 'body': " + pyRepr(body) +
		"}, 'data': {'user_id': " + pyRepr(userID) + ", 'priority': " + pyRepr(priority) + "}}"
	return utf8.RuneCountInString(s)
}

// channelOf maps a delivery event type to its channel.
var channelOf = map[string]string{typeEmailDelivered: "email", typeSMSDelivered: "sms", typePushDelivered: "push"}

// record is AuditOrgan: it appends each delivery to the audit log and emits
// DELIVERY_COMPLETED with an audit id made of the delivery event's id.
func (a *App) record(ctx context.Context, ev necro.Event) ([]necro.Event, error) {
	p := ev.Payload()
	if p["user_id"] == nil {
		return nil, necro.Permanent(errors.New("missing required field: user_id"))
	}
	userID := show(p["user_id"])
	channel := channelOf[ev.Type()]
	out, err := necro.NewEvent(typeCompleted, map[string]any{
		"user_id": p["user_id"], "channel": channel, "status": "delivered", "audit_id": "audit_" + ev.ID()[:8],
	})
	if err != nil {
		return nil, necro.Permanent(err)
	}
	rec := AuditRecord{
		Request: a.seq[ev.Correlation()], UserID: userID, Channel: channel, EventID: ev.ID(),
		RecordedAt: time.Now().UTC().Format(necro.TimestampLayout),
	}
	if v, ok := p["delivered_at"].(string); ok {
		rec.DeliveredAt = v
	}
	if n, ok := p["attempts"].(json.Number); ok {
		if i, err := n.Int64(); err == nil {
			rec.Attempts = int(i)
		}
	}
	// Recorded only now that nothing can fail: a failed Handle leaves no trace.
	a.mu.Lock()
	a.audit = append(a.audit, rec)
	a.mu.Unlock()
	a.log.InfoContext(ctx, "delivery recorded", slog.String("user_id", userID), slog.String("channel", channel))
	return []necro.Event{out}, nil
}

// requireFields fails permanently when p lacks any of the fields: retrying cannot
// add them.
func requireFields(p map[string]any, fields ...string) error {
	var missing []string
	for _, f := range fields {
		if _, ok := p[f]; !ok {
			missing = append(missing, f)
		}
	}
	if len(missing) > 0 {
		return necro.Permanent(fmt.Errorf("missing required fields: %s", strings.Join(missing, ", ")))
	}
	return nil
}

// pause waits d, the simulated latency of a call, or until ctx is done.
func pause(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// falsy reports whether Python would read the JSON value v as false: null, false, 0,
// "" and empty lists and objects.
func falsy(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case bool:
		return !v
	case json.Number:
		f, err := v.Float64()
		return err == nil && f == 0
	case string:
		return v == ""
	case []any:
		return len(v) == 0
	case map[string]any:
		return len(v) == 0
	}
	return false
}

// text reads a field the seed reads as (value or "").strip(): a falsy value is "",
// a string is trimmed, and anything else is not text (ok is false).
func text(v any) (s string, ok bool) {
	if falsy(v) {
		return "", true
	}
	s, ok = v.(string)
	return strings.TrimSpace(s), ok
}

// show prints a JSON value for a person: a string as it is, anything else as JSON.
func show(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// showList prints a list of JSON values as [a, b]; anything else as show does.
func showList(v any) string {
	list, ok := v.([]any)
	if !ok {
		return show(v)
	}
	items := make([]string, len(list))
	for i, item := range list {
		items[i] = show(item)
	}
	return "[" + strings.Join(items, ", ") + "]"
}

// head returns the first n characters of s, as Python's s[:n] does.
func head(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

// pyRepr returns Python's repr of a JSON value as the seed's payload would hold it:
// None, True, False, numbers as written, and strings quoted and escaped the way
// Python quotes them. Lists and objects, which the push fields never are, print as JSON.
func pyRepr(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case bool:
		if v {
			return "True"
		}
		return "False"
	case json.Number:
		return v.String()
	case string:
		return pyStr(v)
	}
	return show(v)
}

// pyStr is Python's repr of a str: single quotes, or double quotes when the text holds
// a single quote and no double one; backslash escapes for the quote, the backslash,
// \t, \n, \r and the characters Python does not print.
func pyStr(s string) string {
	quote := '\''
	if strings.ContainsRune(s, '\'') && !strings.ContainsRune(s, '"') {
		quote = '"'
	}
	var b strings.Builder
	b.WriteRune(quote)
	for _, r := range s {
		switch {
		case r == quote || r == '\\':
			b.WriteRune('\\')
			b.WriteRune(r)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x7f && r >= 0x20, unicode.IsPrint(r):
			b.WriteRune(r)
		case r <= 0xff:
			fmt.Fprintf(&b, `\x%02x`, r)
		case r <= 0xffff:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			fmt.Fprintf(&b, `\U%08x`, r)
		}
	}
	b.WriteRune(quote)
	return b.String()
}
