package necro_test

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/necrostack/necro"
)

func TestPermanent(t *testing.T) {
	base := errors.New("bad input")
	p := necro.Permanent(base)
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"plain", base, false},
		{"permanent", p, true},
		{"wrapped permanent", fmt.Errorf("handle order: %w", p), true},
		{"joined", errors.Join(io.EOF, p), true},
		{"wrapped twice", fmt.Errorf("organ billing: %w", fmt.Errorf("handle: %w", p)), true},
		{"panic with a permanent error", &necro.PanicError{Value: p}, true},
	}
	for _, tt := range tests {
		if got := necro.IsPermanent(tt.err); got != tt.want {
			t.Errorf("IsPermanent(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
	if necro.Permanent(nil) != nil {
		t.Error("Permanent(nil) != nil")
	}
	if !errors.Is(p, base) || p.Error() != base.Error() {
		t.Errorf("Permanent(%v) = %q, does not wrap it", base, p)
	}
}

func TestPanicErrorUnwrap(t *testing.T) {
	e := &necro.PanicError{Value: fmt.Errorf("lookup: %w", io.ErrUnexpectedEOF), Stack: []byte("goroutine 1")}
	if !errors.Is(e, io.ErrUnexpectedEOF) {
		t.Errorf("errors.Is(%v, io.ErrUnexpectedEOF) = false, want true", e)
	}
	if !strings.Contains(e.Error(), "panicked") || !strings.Contains(e.Error(), "lookup") {
		t.Errorf("Error() = %q, want it to say the organ panicked and show the value", e.Error())
	}
	s := &necro.PanicError{Value: "index out of range"}
	if s.Unwrap() != nil || errors.Is(s, io.ErrUnexpectedEOF) || !strings.Contains(s.Error(), "index out of range") {
		t.Errorf("PanicError{string}: Unwrap %v, Error %q", s.Unwrap(), s.Error())
	}
}

func TestValidationErrorMatchesErrInvalidEvent(t *testing.T) {
	cause := errors.New("cause")
	e := &necro.ValidationError{Field: "payload", Reason: "is broken", Err: cause}
	wrapped := fmt.Errorf("enqueue: %w", e)
	if !errors.Is(wrapped, necro.ErrInvalidEvent) || !errors.Is(wrapped, cause) || errors.Is(wrapped, necro.ErrInvalidOrgan) {
		t.Errorf("errors.Is on %v: want ErrInvalidEvent and the cause, not ErrInvalidOrgan", wrapped)
	}
	if want := "necro: invalid event: payload: is broken: cause"; e.Error() != want {
		t.Errorf("Error() = %q, want %q", e.Error(), want)
	}
	if want := "necro: invalid event: id: missing"; (&necro.ValidationError{Field: "id", Reason: "missing"}).Error() != want {
		t.Errorf("Error() without a cause, want %q", want)
	}
}

func TestSentinelErrorsAreDistinct(t *testing.T) {
	all := []error{necro.ErrInvalidEvent, necro.ErrInvalidOrgan, necro.ErrHandlerTimeout, necro.ErrStepBudgetExceeded,
		necro.ErrDepthBudgetExceeded, necro.ErrFanOutExceeded, necro.ErrClosed}
	for i, a := range all {
		if !strings.HasPrefix(a.Error(), "necro: ") {
			t.Errorf("%q does not start with \"necro: \"", a)
		}
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = true", a, b)
			}
		}
	}
}
