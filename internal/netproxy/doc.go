// Package netproxy is an in-process TCP proxy that injects network faults between a
// program and the server it talks to. The chaos harness puts one in front of Redis for
// each worker, so that it can cut a worker's network ([Proxy.Cut]) or freeze it
// ([Proxy.Stall]) while the worker process, and Redis, keep running.
//
// A cut is what a peer sees when a link goes down and comes back refusing: every open
// connection is closed on both sides, and new ones are accepted and closed at once. A
// stall is what a peer sees behind a partition that drops packets: connections stay
// open, new ones are accepted, and no byte moves in either direction, not even the end
// of a stream, until it lifts. Bytes the proxy read before or during a stall are held
// and delivered after it, in order; none is lost.
package netproxy
