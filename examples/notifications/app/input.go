package app

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
)

// validPriorities are the priorities ValidateOrgan accepts; the CSV loader turns any
// other into "normal", as the seed's does.
var validPriorities = map[string]bool{"low": true, "normal": true, "high": true, "critical": true}

// parseJSON reads the seed's JSON input: a list of requests, or an object whose
// "notifications" member is one. Each request stays raw JSON, so that ValidateOrgan
// judges its fields: a malformed request becomes NOTIFICATION_FAILED, not an error here.
// Only a request that is not a JSON object is an error, as no event can carry it.
func parseJSON(data []byte) ([]json.RawMessage, error) {
	data = bytes.TrimSpace(data)
	var list []json.RawMessage
	if bytes.HasPrefix(data, []byte("[")) {
		if err := json.Unmarshal(data, &list); err != nil {
			return nil, err
		}
	} else {
		var file struct {
			Notifications *[]json.RawMessage `json:"notifications"`
		}
		if err := json.Unmarshal(data, &file); err != nil {
			return nil, err
		}
		// The seed reads a missing list as no requests at all; a file of the wrong shape
		// is more likely a mistake than an empty run.
		if file.Notifications == nil {
			return nil, errors.New(`want a list of requests or an object with a "notifications" list`)
		}
		list = *file.Notifications
	}
	for i, raw := range list {
		if !bytes.HasPrefix(bytes.TrimSpace(raw), []byte("{")) {
			return nil, fmt.Errorf("notification %d is not a JSON object", i+1)
		}
	}
	return list, nil
}

// A csvRequest is a request read from a CSV row, with the members in the seed's order.
type csvRequest struct {
	UserID   string   `json:"user_id"`
	Channels []string `json:"channels"`
	Message  string   `json:"message"`
	Priority string   `json:"priority"`
}

// parseCSV reads the seed's CSV input: a header naming user_id, channels, message and
// priority, then one request per row, with the channels joined by "|". As in the seed,
// a row without a user id, a message or a channel is skipped with a warning (in the
// seed's words), and an unknown priority becomes "normal". Unlike the seed, a row
// shorter than the header reads its missing columns as empty instead of crashing, and a
// byte order mark before the header is ignored.
func parseCSV(data []byte) (reqs []json.RawMessage, warnings []string, err error) {
	r := csv.NewReader(bytes.NewReader(bytes.TrimPrefix(data, []byte("\ufeff"))))
	r.FieldsPerRecord = -1 // rows may be shorter or longer than the header
	r.LazyQuotes = true    // a quote inside an unquoted field is text, as in Python's csv
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	column := map[string]int{}
	for i, name := range header {
		column[name] = i // a repeated name means its last column, as in csv.DictReader
	}
	field := func(rec []string, name string) string {
		i, ok := column[name]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	for {
		rec, err := r.Read()
		if errors.Is(err, io.EOF) {
			return reqs, warnings, nil
		}
		if err != nil {
			return nil, nil, err // a *csv.ParseError names the line
		}
		line, _ := r.FieldPos(0)
		skip := func(why string) { warnings = append(warnings, fmt.Sprintf("Warning: Skipping row %d: %s", line, why)) }
		req := csvRequest{UserID: field(rec, "user_id"), Message: field(rec, "message")}
		channels := field(rec, "channels")
		for c := range strings.SplitSeq(channels, "|") {
			if c = strings.TrimSpace(c); c != "" {
				req.Channels = append(req.Channels, c)
			}
		}
		switch {
		case req.UserID == "":
			skip("missing user_id")
			continue
		case req.Message == "":
			skip("missing message")
			continue
		case channels == "":
			skip("missing channels")
			continue
		case len(req.Channels) == 0:
			skip("no valid channels")
			continue
		}
		req.Priority = strings.ToLower(field(rec, "priority"))
		if !validPriorities[req.Priority] {
			req.Priority = "normal"
		}
		raw, err := json.Marshal(req)
		if err != nil {
			return nil, nil, err
		}
		reqs = append(reqs, raw)
	}
}

// The stress mode's choices, those of the seed's create_stress_notifications.
var (
	stressChannels = [][]string{{"email"}, {"sms"}, {"push"}, {"email", "sms"}, {"email", "push"},
		{"sms", "push"}, {"email", "sms", "push"}}
	stressPriorities = []string{"low", "normal", "high", "critical"}
	stressMessages   = []string{"Order update", "Security alert", "Weekly digest", "Payment received",
		"Shipping update", "Account notice"}
)

// stressUsers is the number of users the stress mode picks from: user_001 to user_019.
// Only the first three have contacts, so most stress requests are validated and then
// routed nowhere, as in the seed.
const stressUsers = 19

// Streams of the PCG sources seeded from Options.Seed: one for the stress mode's
// requests and one for the random failures, so that the failures drawn do not depend
// on how many requests were made.
const (
	streamStress   = 0x5354524553530001
	streamFailures = 0x4641494c55524501
)

// stressRequests makes count random requests, the same ones for the same seed.
func stressRequests(count int, seed int64) []json.RawMessage {
	rng := rand.New(rand.NewPCG(uint64(seed), streamStress))
	reqs := make([]json.RawMessage, 0, count)
	for range count {
		req := csvRequest{
			UserID:   fmt.Sprintf("user_%03d", 1+rng.IntN(stressUsers)),
			Channels: stressChannels[rng.IntN(len(stressChannels))],
			Priority: stressPriorities[rng.IntN(len(stressPriorities))],
		}
		req.Message = fmt.Sprintf("%s #%d", stressMessages[rng.IntN(len(stressMessages))], 1000+rng.IntN(9000))
		raw, _ := json.Marshal(req) // cannot fail: strings and a list of strings
		reqs = append(reqs, raw)
	}
	return reqs
}
