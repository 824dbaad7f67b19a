// Command registrar is the student records server and its operator tools. main only
// wires the rooms together; each subcommand is a function of its own.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr, os.Getenv)
	stop()
	os.Exit(code)
}

type command struct {
	name, summary string
	run           func(ctx context.Context, e *env, args []string) error
}

// env is what a subcommand gets from the outside world.
type env struct {
	stdin          io.Reader
	stdout, stderr io.Writer
	getenv         func(string) string
}

// exitError carries a specific exit code.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func commands() []command {
	return []command{
		{"serve", "run the API server (default: SQLite in ./registrar-data, on 127.0.0.1:8080)", runServe},
		{"demo", "generate a synthetic district into a fresh data dir and serve it, printing a ready token", runDemo},
		{"clients", "manage API clients: create | list | revoke", runClients},
		{"tokens", "issue a short-lived token for a roster user: tokens issue --user SOURCEDID", runTokens},
		{"import", "import a OneRoster 1.2 CSV package (zip or folder)", runImport},
		{"export", "export a OneRoster 1.2 CSV bulk package into a folder", runExport},
		{"generate", "write a synthetic district as a OneRoster 1.2 CSV package", runGenerate},
		{"audit", "audit trail: verify | export", runAudit},
		{"keys", "key-encryption key: rotate (online, resumable) | status", runKeys},
		{"students", "students purge SOURCEDID --yes: delete a student and their keys, with a signed certificate", runStudents},
		{"certificates", "certificates verify FILE: check a deletion certificate's signature", runCertificates},
		{"worker", "consume the inbound event streams and relay changes outbound (serve runs one too)", runWorker},
		{"backup", "backup --to DIR --kek-to FILE: copy the data dir while it serves, and check the copy", runBackup},
		{"migrate", "apply database migrations and exit", runMigrate},
		{"version", "print the version", func(_ context.Context, e *env, _ []string) error {
			fmt.Fprintln(e.stdout, "registrar", version)
			return nil
		}},
	}
}

// Main runs registrar with args (without the program name) and returns the exit code.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer, getenv func(string) string) int {
	e := &env{stdin: stdin, stdout: stdout, stderr: stderr, getenv: getenv}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name == args[0] {
			if err := c.run(ctx, e, args[1:]); err != nil {
				if ee, ok := err.(*exitError); ok {
					if ee.msg != "" {
						fmt.Fprintln(stderr, "registrar "+c.name+": "+ee.msg)
					}
					return ee.code
				}
				fmt.Fprintln(stderr, "registrar "+c.name+": "+err.Error())
				return 1
			}
			return 0
		}
	}
	fmt.Fprintf(stderr, "registrar: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprint(w, `registrar keeps student records under FERPA and serves them as OneRoster 1.2.

Usage: registrar COMMAND [flags]

Commands:
`)
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-12s %s\n", c.name, c.summary)
	}
	fmt.Fprint(w, `
Every command takes --data DIR (or REGISTRAR_DATA; default ./registrar-data).
Run "registrar COMMAND -h" for the flags of one command.

Start here:
  registrar demo                     a synthetic district, served, with a token printed
  registrar serve                    your own data dir on http://127.0.0.1:8080
`)
}
