// Package archtest holds the test that keeps the import arrows of docs/design.md true.
//
// Its test lists every package of the module with `go list -deps -json`, then checks
// each non-test import against the rules in arch_test.go: the root imports only the
// standard library, each third-party module has one home (protoactor-go in actors,
// go-redis in backend/redis, otel in telemetry), the spine never reaches a concrete
// backend, and examples use only the public API. The package has no code of its own;
// when the design moves an arrow, the rules move with it.
package archtest
