package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"registrar/internal/testdistrict"
)

// keysRun runs registrar in-process and returns its exit code, stdout and stderr.
func keysRun(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb auditBuffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb, func(string) string { return "" })
	return code, out.String(), errb.String()
}

// keysData makes a data dir holding the test district, as the CLI opens it.
func keysData(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	e := &env{stdin: strings.NewReader(""), stdout: io.Discard, stderr: io.Discard, getenv: func(string) string { return "" }}
	fs, vals := newFlags(e, "test", "")
	cfg, err := parse(e, fs, vals, []string{"--data", dir, "--log-level", "error"})
	if err != nil {
		t.Fatal(err)
	}
	a, err := openApp(context.Background(), e, cfg, newLogger(e, cfg.LogLevel))
	if err != nil {
		t.Fatal(err)
	}
	defer a.close()
	if err := testdistrict.Load(context.Background(), a.store); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestKeysRotateStopsResumesAndReports(t *testing.T) {
	t.Parallel()
	dir := keysData(t)
	code, out, errs := keysRun(t, "keys", "rotate", "--data", dir, "--log-level", "error", "--batch", "5", "--max-batches", "1", "--pause", "0s")
	if code != 0 || !strings.Contains(out, "stopped after 1 batches") {
		t.Fatalf("first run: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = keysRun(t, "keys", "status", "--data", dir, "--log-level", "error")
	if code != 0 || !strings.Contains(out, "UNFINISHED") {
		t.Fatalf("status after a stopped run: exit %d\n%s", code, out)
	}
	code, out, errs = keysRun(t, "keys", "rotate", "--data", dir, "--log-level", "error", "--pause", "0s")
	if code != 0 || !strings.Contains(out, "resumed") || !strings.Contains(out, "rotation finished") || !strings.Contains(out, "retired KEK versions") {
		t.Fatalf("second run: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = keysRun(t, "keys", "status", "--data", dir, "--log-level", "error")
	if code != 0 || strings.Contains(out, "UNFINISHED") || strings.Count(out, "KEK version ") != 1 || !strings.Contains(out, "finished") {
		t.Fatalf("status after rotation: exit %d\n%s", code, out)
	}
}

func TestStudentsPurgeAndCertificatesVerify(t *testing.T) {
	t.Parallel()
	dir := keysData(t)
	if code, _, errs := keysRun(t, "students", "purge", testdistrict.Minor, "--data", dir); code != 2 || !strings.Contains(errs, "--yes") {
		t.Fatalf("purge without --yes: exit %d, %s; want 2 and a request for --yes", code, errs)
	}
	cert := filepath.Join(t.TempDir(), "cert.json")
	code, out, errs := keysRun(t, "students", "purge", testdistrict.Minor, "--yes", "--reason", "ticket-17", "--out", cert, "--data", dir, "--log-level", "error")
	if code != 0 || !strings.Contains(out, "deleted") || !strings.Contains(out, cert) {
		t.Fatalf("purge: exit %d\n%s%s", code, out, errs)
	}
	if fi, err := os.Stat(cert); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("certificate file: %v", err)
	}
	if code, _, errs := keysRun(t, "students", "purge", testdistrict.Minor, "--yes", "--data", dir, "--log-level", "error"); code == 0 || !strings.Contains(errs, "not found") {
		t.Fatalf("second purge: exit %d, %s; want not found", code, errs)
	}

	t.Run("the certificate verifies", func(t *testing.T) {
		code, out, errs := keysRun(t, "certificates", "verify", cert, "--data", dir, "--log-level", "error")
		if code != 0 || !strings.Contains(out, "verifies") || !strings.Contains(out, testdistrict.Minor) {
			t.Fatalf("exit %d\n%s%s", code, out, errs)
		}
	})
	t.Run("a modified certificate does not", func(t *testing.T) {
		b, _ := os.ReadFile(cert)
		bad := filepath.Join(t.TempDir(), "bad.json")
		os.WriteFile(bad, []byte(strings.Replace(string(b), "ticket-17", "ticket-18", 1)), 0o600)
		code, _, errs := keysRun(t, "certificates", "verify", bad, "--data", dir, "--log-level", "error")
		if code != 1 || !strings.Contains(errs, "does NOT verify") {
			t.Fatalf("exit %d, %s; want 1 and does NOT verify", code, errs)
		}
	})
	t.Run("another installation's keys do not verify it, and none are made", func(t *testing.T) {
		other := t.TempDir()
		code, _, errs := keysRun(t, "certificates", "verify", cert, "--data", other)
		if code != 2 || !strings.Contains(errs, "no keys") {
			t.Fatalf("exit %d, %s", code, errs)
		}
		if _, err := os.Stat(filepath.Join(other, "keys")); err == nil {
			t.Fatal("verify created keys")
		}
		otherData := keysData(t)
		if code, _, errs := keysRun(t, "certificates", "verify", cert, "--data", otherData, "--log-level", "error"); code != 1 {
			t.Fatalf("verify with another installation's keys: exit %d, %s; want 1", code, errs)
		}
	})
}
