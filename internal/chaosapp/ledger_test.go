package chaosapp

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	line1 = `{"id":"a","organ":"work","type":"chaos.task","corr":"a","cause":"","depth":0,"attempt":1,"do":"ok","outcome":"ok","children":0,"worker":"w1","t":"2026-01-01T00:00:00Z"}`
	line2 = `{"id":"b","organ":"audit","type":"chaos.task","corr":"a","cause":"a","depth":1,"attempt":2,"do":"hang","outcome":"hang","children":0,"worker":"w1","t":"2026-01-01T00:00:01Z"}`
)

func TestReadLedger(t *testing.T) {
	tests := []struct {
		name    string
		text    string
		wantIDs string
		wantErr string
	}{
		{"empty", "", "", ""},
		{"whole lines", line1 + "\n" + line2 + "\n", "a,b", ""},
		{"torn last line is dropped", line1 + "\n" + line2[:40], "a", ""},
		{"last line without newline but whole is kept", line1 + "\n" + line2, "a,b", ""},
		{"blank lines are skipped", line1 + "\n\n" + line2 + "\n", "a,b", ""},
		{"a torn line before the last is skipped", line1 + "\n" + line2[:40] + "\n" + line2 + "\n", "a,b", ""},
		{"a line that is not a prefix of one is an error", line1 + "\n" + `{"id":"b" x}` + "\n" + line2 + "\n", "", "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ledger.jsonl")
			if err := os.WriteFile(path, []byte(tt.text), 0o644); err != nil {
				t.Fatal(err)
			}
			lines, err := ReadLedger(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), path) {
					t.Errorf("ReadLedger(%q) = %v, want an error naming %s and %q", tt.text, err, path, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ReadLedger(%q) = %v", tt.text, err)
			}
			var ids []string
			for _, l := range lines {
				ids = append(ids, l.ID)
			}
			if got := strings.Join(ids, ","); got != tt.wantIDs {
				t.Errorf("ReadLedger(%q) ids = %q, want %q", tt.text, got, tt.wantIDs)
			}
		})
	}
	if _, err := ReadLedger(filepath.Join(t.TempDir(), "missing")); !os.IsNotExist(err) {
		t.Errorf("ReadLedger(missing) = %v, want a not-exist error", err)
	}
}

// A process that opens a ledger a crash left with a torn last line starts on a new
// line, so the torn line is read as torn and the new one whole.
func TestLedgerAfterATornLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	if err := os.WriteFile(path, []byte(line1+"\n"+line2[:40]), 0o644); err != nil {
		t.Fatal(err)
	}
	lg, err := openLedger(path, "w2")
	if err != nil {
		t.Fatal(err)
	}
	if err := lg.write(LedgerLine{ID: "c", Organ: OrganAudit, Outcome: OutcomeOK}); err != nil {
		t.Fatal(err)
	}
	if err := lg.close(); err != nil {
		t.Fatal(err)
	}
	lines, err := ReadLedger(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 2 || lines[0].ID != "a" || lines[1].ID != "c" {
		t.Errorf("lines after a torn one: %+v, want a and c", lines)
	}
}

// A line read back holds every field written, and a write is one whole line.
func TestLedgerRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.jsonl")
	lg, err := openLedger(path, "w7")
	if err != nil {
		t.Fatal(err)
	}
	want := LedgerLine{ID: "x", Organ: OrganWork, Type: EventType, Correlation: "r", Causation: "p", Depth: 3, Attempt: 2,
		Do: DoBomb, Outcome: OutcomeBomb, Children: 101, At: time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC)}
	if err := lg.write(want); err != nil {
		t.Fatal(err)
	}
	if err := lg.close(); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(raw, []byte("\n")) != 1 || !bytes.HasSuffix(raw, []byte("\n")) {
		t.Errorf("ledger holds %q, want one line", raw)
	}
	lines, err := ReadLedger(path)
	want.Worker = "w7"
	if err != nil || len(lines) != 1 || lines[0] != want {
		t.Errorf("ReadLedger() = %+v, %v; want [%+v]", lines, err, want)
	}
}

// Reading a ledger never panics, and whatever it returns was in the input.
func FuzzReadLedger(f *testing.F) {
	f.Add([]byte(line1 + "\n" + line2 + "\n"))
	f.Add([]byte(line1 + "\n" + line2[:17]))
	f.Add([]byte("{}\n"))
	f.Add([]byte("\x00"))
	f.Add([]byte("[1,2]\n{"))
	f.Fuzz(func(t *testing.T, data []byte) {
		lines, err := readLedger(bytes.NewReader(data))
		if err != nil {
			return // rejecting input is fine; panicking is not
		}
		if n := bytes.Count(data, []byte("\n")) + 1; len(lines) > n {
			t.Fatalf("%d lines from %d lines of input", len(lines), n)
		}
		for _, l := range lines {
			if _, err := json.Marshal(l); err != nil {
				t.Fatalf("line %+v does not encode: %v", l, err)
			}
		}
	})
}
