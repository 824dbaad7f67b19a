// Command bare serves the benchmark's baseline (package bare) on a loopback port, as a
// process of its own: `go run ./bench` starts it beside `registrar serve`, so that
// both sides of the HTTP pair pay for a process of their own and for the loopback
// between processes, and neither shares one with the load generator.
//
//	bare PATH    serve the SQLite database at PATH read-only until SIGINT or SIGTERM
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"registrar/bench/bare"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: bare PATH (a registrar SQLite database)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b, err := bare.Start(ctx, os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bare:", err)
		os.Exit(1)
	}
	fmt.Println("listening on", b.URL) // the line registrar serve prints too
	<-ctx.Done()
	b.Close()
}
