//go:build !necro_failpoint

package redis

// Without the necro_failpoint build tag there is no fault injection: no environment
// variable is read and no call can crash the process. The fault tests and the chaos
// harness build with the tag (see failpoint.go).

type crashPoint struct{}

var failpoint *crashPoint

// hit does nothing.
func (*crashPoint) hit(string) {}
