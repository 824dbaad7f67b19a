// Package kmstest runs local-kms, a KMS-compatible server, on loopback for tests and
// makes keys in it. Tests only.
//
// The endpoint comes from REGISTRAR_TEST_KMS_ENDPOINT (scripts/test starts local-kms and
// sets it). When that is unset, Endpoint starts a local-kms of the test's own, on a port
// the kernel picks and with its data in a temp dir, and stops it by PID when the test
// ends. A missing binary fails the test with the command that installs it: the KMS
// tests never skip.
package kmstest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/kms"
)

// Module is the local-kms the tests are written against.
const Module = "github.com/nsmithuk/local-kms@v0.0.0-20260228092603-2a5e92d09ab6"

// Install is the command that installs it into $(go env GOPATH)/bin.
const Install = "go install " + Module

// Region is the region local-kms is started in, and so the region of its key ARNs.
const Region = "us-east-1"

// Credentials are static test credentials: local-kms accepts any.
var Credentials = credentials.NewStaticCredentialsProvider("registrar-test", "registrar-test", "")

// Endpoint returns the URL of a local-kms on loopback: the one in
// REGISTRAR_TEST_KMS_ENDPOINT, or one started for this test.
func Endpoint(t testing.TB) string {
	t.Helper()
	if e := os.Getenv("REGISTRAR_TEST_KMS_ENDPOINT"); e != "" {
		u, err := url.Parse(e)
		if err != nil || !loopback(u.Hostname()) {
			t.Fatalf("REGISTRAR_TEST_KMS_ENDPOINT=%q: the tests talk to loopback only (http://127.0.0.1:PORT)", e)
		}
		return e
	}
	bin, err := binary()
	if err != nil {
		t.Fatalf("the KMS tests need local-kms: %v\nRun ./scripts/test, which installs and starts it, or install it with:\n  %s", err, Install)
	}
	ep, stop, err := start(bin, t.TempDir())
	if err != nil {
		t.Fatalf("start local-kms: %v", err)
	}
	t.Cleanup(stop)
	return ep
}

// Start starts a local-kms of this test's own, whatever REGISTRAR_TEST_KMS_ENDPOINT
// says, seeded with the keys of seed when it is not empty (local-kms's seeding YAML,
// KMS_SEED_PATH). It returns the endpoint and a stop that may be called before the test
// ends (it is called then anyway). It is for what a shared server cannot give: a key
// whose automatic rotation falls due during the test, or a KMS that goes away.
func Start(t testing.TB, seed string) (endpoint string, stop func()) {
	t.Helper()
	bin, err := binary()
	if err != nil {
		t.Fatalf("the KMS tests need local-kms: %v\nRun ./scripts/test, which installs it, or install it with:\n  %s", err, Install)
	}
	dir := t.TempDir()
	if seed != "" {
		if err := os.WriteFile(filepath.Join(dir, "seed.yaml"), []byte(seed), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ep, kill, err := start(bin, dir)
	if err != nil {
		t.Fatalf("start local-kms: %v", err)
	}
	var once sync.Once
	stop = func() { once.Do(kill) }
	t.Cleanup(stop)
	return ep, stop
}

// NewKey creates a symmetric key in the local-kms at endpoint and returns its URI
// (aws-kms://arn:...), as registrar's --kek-uri takes it.
func NewKey(t testing.TB, endpoint string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := Client(endpoint).CreateKey(ctx, &kms.CreateKeyInput{Description: aws.String("registrar test " + t.Name())})
	if err != nil {
		t.Fatalf("create a key in local-kms at %s: %v", endpoint, err)
	}
	return "aws-kms://" + aws.ToString(out.KeyMetadata.Arn)
}

// Client is a KMS client of the local-kms at endpoint (administration in tests).
func Client(endpoint string) *kms.Client {
	return kms.New(kms.Options{Region: Region, Credentials: Credentials, BaseEndpoint: aws.String(endpoint)})
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// binary finds local-kms on PATH or where go install puts it.
func binary() (string, error) {
	if p, err := exec.LookPath("local-kms"); err == nil {
		return p, nil
	}
	var dirs []string
	if d := os.Getenv("GOBIN"); d != "" {
		dirs = append(dirs, d)
	}
	if out, err := exec.Command("go", "env", "GOBIN", "GOPATH").Output(); err == nil {
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		if len(lines) == 2 {
			if lines[0] != "" {
				dirs = append(dirs, lines[0])
			}
			for _, p := range filepath.SplitList(lines[1]) {
				dirs = append(dirs, filepath.Join(p, "bin"))
			}
		}
	}
	if home, err := os.UserHomeDir(); err == nil {
		dirs = append(dirs, filepath.Join(home, "go", "bin"))
	}
	for _, d := range dirs {
		p := filepath.Join(d, "local-kms")
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("local-kms is not on PATH nor in %s", strings.Join(dirs, ", "))
}

// started is local-kms's log line once it listens; with PORT=0 it names the port.
var started = regexp.MustCompile(`Local KMS started on [0-9.:\[\]]*:([0-9]+)`)

// start runs local-kms with its data in dir on a port the kernel picks (PORT=0, so no
// other process can take the port between choosing and binding it). local-kms has no
// host setting and listens on every interface; the tests only ever call 127.0.0.1.
func start(bin, dir string) (endpoint string, stop func(), err error) {
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"PORT=0",
		"KMS_REGION="+Region,
		"KMS_DATA_PATH="+filepath.Join(dir, "data"),
		"KMS_SEED_PATH="+filepath.Join(dir, "seed.yaml"), // written by Start when asked; otherwise the tests make keys (NewKey)
	)
	// Should the test binary die without cleaning up (a panic, a timeout), the kernel
	// ends local-kms with it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	// Its log goes through a pipe of our own, not cmd.StderrPipe, so that Wait may run
	// while the reader below is still draining.
	pr, pw, err := os.Pipe()
	if err != nil {
		return "", nil, err
	}
	cmd.Stdout, cmd.Stderr = pw, pw
	if err := cmd.Start(); err != nil {
		pr.Close()
		pw.Close()
		return "", nil, fmt.Errorf("run %s: %w", bin, err)
	}
	pw.Close()
	port := make(chan string, 1)
	var head strings.Builder // the first lines, for the error if it never listens; read after port closes
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if head.Len() < 4096 {
				head.WriteString(sc.Text() + "\n")
			}
			if m := started.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
				_, _ = io.Copy(io.Discard, pr) // keep draining, so local-kms never blocks on a full pipe
				return
			}
		}
		close(port)
	}()
	stop = func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	}
	select {
	case p, ok := <-port:
		if !ok {
			_ = cmd.Wait()
			return "", nil, fmt.Errorf("local-kms exited before listening:\n%s", head.String())
		}
		return "http://127.0.0.1:" + p, stop, nil
	case <-time.After(30 * time.Second):
		stop()
		if _, ok := <-port; !ok {
			return "", nil, fmt.Errorf("local-kms did not start within 30s:\n%s", head.String())
		}
		return "", nil, errors.New("local-kms did not start within 30s")
	}
}
