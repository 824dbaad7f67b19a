// Package streamtest runs a Kinesis emulator (kinesalite) on loopback for tests and
// names streams for them. Tests only.
//
// The endpoint comes from REGISTRAR_TEST_KINESIS_ENDPOINT (scripts/test starts
// kinesalite and sets it); when that is unset, the first test that needs Kinesis starts
// kinesalite itself from node_modules under $REGISTRAR_TEST_NODE_MODULES or
// $HOME/.cache/registrar-test/node_modules (where scripts/test installs it), and Stop,
// called from TestMain, ends it by PID. A missing node or kinesalite fails the test with
// the command that installs it: the Kinesis tests never skip.
package streamtest

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"registrar/stream"
)

// Install is the command that installs what the Kinesis tests need.
const Install = "npm install --ignore-scripts --no-audit --no-fund --prefix \"$HOME/.cache/registrar-test\" kinesalite@3.3.3"

// wrapper starts kinesalite on 127.0.0.1: its command line has no host option.
const wrapper = `const kinesalite = require('kinesalite');
kinesalite({path: process.env.KINESALITE_DIR, createStreamMs: 0, deleteStreamMs: 0, updateStreamMs: 0, shardLimit: 10000}).listen(+process.argv[2], '127.0.0.1', () => console.log('kinesalite listening'));
`

var (
	mu       sync.Mutex
	endpoint string
	proc     *exec.Cmd
	dir      string
)

// Endpoint returns the emulator's URL, starting it on first use.
func Endpoint(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if endpoint != "" {
		return endpoint
	}
	if e := os.Getenv("REGISTRAR_TEST_KINESIS_ENDPOINT"); e != "" {
		u, err := url.Parse(e)
		if err != nil || !loopback(u.Hostname()) {
			t.Fatalf("REGISTRAR_TEST_KINESIS_ENDPOINT=%q: tests talk to loopback only (http://127.0.0.1:PORT)", e)
		}
		endpoint = e
		return endpoint
	}
	ep, err := start()
	if err != nil {
		t.Fatalf("the Kinesis tests need kinesalite on loopback: %v\nInstall it with:\n  %s\nor run ./scripts/test, which installs and starts it", err, Install)
	}
	endpoint = ep
	return endpoint
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func start() (string, error) {
	node, err := exec.LookPath("node")
	if err != nil {
		return "", errors.New("node is not installed (apt-get install nodejs)")
	}
	mods := os.Getenv("REGISTRAR_TEST_NODE_MODULES")
	if mods == "" {
		home, _ := os.UserHomeDir()
		mods = filepath.Join(home, ".cache", "registrar-test", "node_modules")
	}
	if _, err := os.Stat(filepath.Join(mods, "kinesalite", "package.json")); err != nil {
		return "", fmt.Errorf("kinesalite is not installed under %s", mods)
	}
	if dir, err = os.MkdirTemp("", "kinesalite-"); err != nil {
		return "", err
	}
	script := filepath.Join(dir, "kinesalite.js")
	if err := os.WriteFile(script, []byte(wrapper), 0o600); err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(node, script, fmt.Sprint(port))
	cmd.Env = append(os.Environ(), "NODE_PATH="+mods, "KINESALITE_DIR="+filepath.Join(dir, "data"))
	cmd.Stderr = os.Stderr
	// Should the test binary die without calling Stop (a panic, a timeout), the kernel
	// ends the emulator with it.
	dieWithParent(cmd)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return "", err
	}
	if err := cmd.Start(); err != nil {
		return "", fmt.Errorf("start kinesalite: %w", err)
	}
	ready := make(chan bool, 1)
	go func() {
		sc := bufio.NewScanner(out)
		ok := false
		for sc.Scan() {
			if !ok && strings.Contains(sc.Text(), "listening") {
				ok = true
				ready <- true
			}
		}
		if !ok {
			ready <- false
		}
	}()
	select {
	case ok := <-ready:
		if !ok {
			_ = cmd.Wait()
			return "", errors.New("kinesalite exited before listening")
		}
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return "", errors.New("kinesalite did not start within 30s")
	}
	proc = cmd
	return fmt.Sprintf("http://127.0.0.1:%d", port), nil
}

// Stop ends the kinesalite this package started, by its PID, and removes its data.
func Stop() {
	mu.Lock()
	defer mu.Unlock()
	if proc != nil {
		_ = proc.Process.Kill()
		_ = proc.Wait()
		proc = nil
	}
	if dir != "" {
		os.RemoveAll(dir)
		dir = ""
	}
	endpoint = ""
}

// Main runs a test binary's tests and stops kinesalite afterwards: call it from TestMain.
func Main(m interface{ Run() int }) int {
	code := m.Run()
	Stop()
	return code
}

var unsafeName = regexp.MustCompile(`[^a-zA-Z0-9_.-]+`)

// StreamName returns a stream name unique to this test.
func StreamName(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	n := unsafeName.ReplaceAllString(t.Name(), "-")
	if len(n) > 80 {
		n = n[len(n)-80:]
	}
	return strings.Trim(n, "-.") + "-" + hex.EncodeToString(b[:])
}

// Credentials are the emulator's: any key is accepted.
var Credentials = credentials.NewStaticCredentialsProvider("registrar-test", "registrar-test", "")

// New returns a client of stream name on the emulator, created with shards shards
// when shards > 0. client, if set, carries the calls (fault injection).
func New(t testing.TB, name string, shards int, client aws.HTTPClient) *stream.Kinesis {
	t.Helper()
	ctx := context.Background()
	k, err := stream.NewKinesis(ctx, stream.KinesisOptions{Stream: name, Region: "us-east-1", Endpoint: Endpoint(t), Credentials: Credentials, HTTPClient: client,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	if shards > 0 {
		cctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := stream.CreateKinesisStream(cctx, k, shards); err != nil {
			t.Fatal(err)
		}
	}
	return k
}
