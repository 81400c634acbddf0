package main

import (
	"errors"
	"flag"
	"fmt"
	"strings"
)

// Exit codes, as the command's doc lists them.
const (
	exitOK          = 0
	exitFailed      = 1
	exitUsage       = 2
	exitUnreachable = 3
	exitAuth        = 4
	exitPending     = 5
)

// An exitError carries the exit code of a failure; its text is the one line printed.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// usageErr reports bad arguments.
func usageErr(format string, args ...any) error {
	return &exitError{code: exitUsage, err: fmt.Errorf(format, args...)}
}

// withCode gives err an exit code.
func withCode(code int, err error) error {
	if err == nil {
		return nil
	}
	return &exitError{code: code, err: err}
}

// report prints err as one line on stderr, never a stack trace, and returns its exit
// code. A flag parse error was printed by the flag package already.
func report(e *env, name string, err error) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return exitOK
	}
	var fe flagError
	if errors.As(err, &fe) {
		return exitUsage
	}
	code := exitFailed
	var ee *exitError
	if errors.As(err, &ee) {
		code = ee.code
	}
	fmt.Fprintf(e.stderr, "necro-actors %s: %s\n", name, oneLine(err.Error()))
	return code
}

// flagError is a flag parse error, already printed with the command's usage.
type flagError struct{ error }

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }
