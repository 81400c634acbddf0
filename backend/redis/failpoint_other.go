//go:build necro_failpoint && !unix

package redis

import "os"

// crash ends the process at once.
func crash() { os.Exit(137) }
