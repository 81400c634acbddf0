// Package redisproc runs redis-server processes on the loopback interface: for tests
// (through internal/redistest), for the chaos harness, which kills and restarts Redis
// under load, and for the benchmark suite, which needs a server of its own.
//
// A [Server] is one redis-server with a data directory the caller owns. [Server.Kill]
// ends it with SIGKILL, as a crash would; [Server.Restart] starts it again on the same
// port and directory, so that an append-only file written before the crash is read
// back; [Server.Stop] ends it cleanly. On Linux the kernel kills a server when the
// process that started it dies, even by SIGKILL, so that no server outlives its owner.
//
// The package depends on the standard library only: [Start] waits for PING, and
// [Server.Do] inspects the server, over a few lines of RESP of its own.
package redisproc
