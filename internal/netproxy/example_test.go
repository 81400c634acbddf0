package netproxy_test

import (
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/necrostack/necro/internal/netproxy"
)

// A proxy in front of a one-shot echo server: a connection works, a cut ends it, and
// after Restore a new one works again.
func Example() {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { _, _ = io.Copy(c, c); _ = c.Close() })
		}
	})

	p, err := netproxy.New(ln.Addr().String())
	if err != nil {
		panic(err)
	}
	echo := func(c net.Conn, msg string) {
		buf := make([]byte, len(msg))
		_, _ = io.WriteString(c, msg)
		_, err := io.ReadFull(c, buf)
		fmt.Printf("%q %v\n", buf, err)
	}
	c, _ := net.Dial("tcp", p.Addr())
	echo(c, "ping")
	p.Cut()
	_, err = c.Read(make([]byte, 1))
	fmt.Println("read after Cut:", err)
	p.Restore()
	c2, _ := net.Dial("tcp", p.Addr())
	echo(c2, "pong")
	_ = p.Close()
	fmt.Printf("%+v\n", p.Stats())
	// Output:
	// "ping" <nil>
	// read after Cut: EOF
	// "pong" <nil>
	// {Accepted:2 Refused:0 Open:0 BytesUp:8 BytesDown:8}
}
