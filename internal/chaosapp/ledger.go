package chaosapp

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// The values of [LedgerLine.Outcome].
const (
	OutcomeOK    = "ok"    // Handle returned without error
	OutcomeError = "error" // Handle returned an error
	OutcomePanic = "panic" // Handle is about to panic
	OutcomeHang  = "hang"  // Handle starts to block, ignoring its ctx
	OutcomeExit  = "exit"  // Handle is about to kill its process
	OutcomeBomb  = "bomb"  // Handle returns more than MaxFanOut children
)

// A LedgerLine records one Handle call: which event, which organ, what the directive
// asked and what the call did. It is written just before Handle returns, before it
// panics, as a hang starts and before the process kills itself; a hang writes nothing
// when it finally returns, so every attempt at a "hang" leaves exactly one line.
type LedgerLine struct {
	ID          string    `json:"id"`
	Organ       string    `json:"organ"`
	Type        string    `json:"type"`
	Correlation string    `json:"corr"`  // the root's id
	Causation   string    `json:"cause"` // the parent's id; empty on a root
	Depth       int       `json:"depth"`
	Attempt     int       `json:"attempt"`
	Do          string    `json:"do"`       // the directive's Do, "ok" when it was empty
	Outcome     string    `json:"outcome"`  // OutcomeOK, OutcomeError, ...
	Children    int       `json:"children"` // the children returned
	Worker      string    `json:"worker"`   // the worker's consumer name
	At          time.Time `json:"t"`
}

// ReadLedger returns the lines of the ledger at path, in the order they were written.
// A last line without its newline is a write cut short by a crash: it is kept when it
// decodes and dropped when it does not. Any other line that does not decode is an error
// naming the file and the line.
func ReadLedger(path string) ([]LedgerLine, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close() // read only: a close error loses nothing
	lines, err := readLedger(f)
	if err != nil {
		return nil, fmt.Errorf("ledger %s: %w", path, err)
	}
	return lines, nil
}

// readLedger decodes ledger lines from r. A line cut short by a crash is a prefix of
// a line: it is skipped wherever it is, as the writer that comes after a crash starts
// on a new line (see openLedger). Any other line that does not decode is an error.
func readLedger(r io.Reader) ([]LedgerLine, error) {
	br := bufio.NewReader(r)
	var out []LedgerLine
	for n := 1; ; n++ {
		raw, err := br.ReadBytes('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return out, err
		}
		last := errors.Is(err, io.EOF)
		if len(bytes.TrimSpace(raw)) > 0 {
			var l LedgerLine
			switch derr := json.NewDecoder(bytes.NewReader(bytes.TrimRight(raw, "\r\n"))).Decode(&l); {
			case derr == nil:
				out = append(out, l)
			case errors.Is(derr, io.ErrUnexpectedEOF):
				// torn by a crash: the handling it began to record was not settled
			default:
				return out, fmt.Errorf("line %d: %w", n, derr)
			}
		}
		if last {
			return out, nil
		}
	}
}

// A ledger appends lines to a file opened O_APPEND. Each line goes out in one write(2),
// unbuffered, so lines of concurrent calls never interleave and a SIGKILL loses
// nothing written. A SIGKILL can still cut a write that is under way (the kernel checks
// for a fatal signal between pages), leaving a torn line at the end of the file: the
// next process to open the ledger ends that line first.
type ledger struct {
	f      *os.File
	worker string
}

func openLedger(path, worker string) (*ledger, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open the ledger: %w", err)
	}
	if err := endTornLine(f); err != nil {
		_ = f.Close() // the repair's failure is the one to report
		return nil, fmt.Errorf("open the ledger: %w", err)
	}
	return &ledger{f: f, worker: worker}, nil
}

// endTornLine writes a newline when the file does not end with one, so that a line a
// crash cut short stays alone on its line and the next line starts clean.
func endTornLine(f *os.File) error {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return err
	}
	r, err := os.Open(f.Name())
	if err != nil {
		return err
	}
	defer r.Close() // read only
	last := make([]byte, 1)
	if _, err := r.ReadAt(last, st.Size()-1); err != nil {
		return err
	}
	if last[0] == '\n' {
		return nil
	}
	_, err = f.Write([]byte{'\n'})
	return err
}

// write appends l, stamped with the worker's name.
func (lg *ledger) write(l LedgerLine) error {
	l.Worker = lg.worker
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	_, err = lg.f.Write(append(b, '\n'))
	return err
}

func (lg *ledger) close() error { return lg.f.Close() }
