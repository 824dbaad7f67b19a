package config

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func load(t *testing.T, args []string, env map[string]string) (*Config, error) {
	t.Helper()
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	vals := Register(fs)
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	return Load(fs, vals, func(k string) string { return env[k] })
}

func TestFlagsBeatEnvironmentBeatsDefaults(t *testing.T) {
	c, err := load(t, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.Data != "./registrar-data" {
		t.Errorf("defaults: got addr %q data %q", c.Addr, c.Data)
	}
	c, err = load(t, nil, map[string]string{"REGISTRAR_ADDR": "127.0.0.1:9000"})
	if err != nil || c.Addr != "127.0.0.1:9000" {
		t.Errorf("environment: got %q, %v; want 127.0.0.1:9000", c.Addr, err)
	}
	c, err = load(t, []string{"--addr", "127.0.0.1:9100"}, map[string]string{"REGISTRAR_ADDR": "127.0.0.1:9000"})
	if err != nil || c.Addr != "127.0.0.1:9100" {
		t.Errorf("flag over environment: got %q, %v; want 127.0.0.1:9100", c.Addr, err)
	}
}

func TestSecretsComeFromFilesAndAreNeverPrinted(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(path, []byte("s3cret-from-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := load(t, nil, map[string]string{"REGISTRAR_DATABASE_PASSWORD_FILE": path})
	if err != nil {
		t.Fatal(err)
	}
	if c.DatabasePassword != "s3cret-from-file" {
		t.Errorf("password from file: got %q, want s3cret-from-file", c.DatabasePassword)
	}
	if s := c.String(); strings.Contains(s, "s3cret") || !strings.Contains(s, "REGISTRAR_DATABASE_PASSWORD=(set)") {
		t.Errorf("String shows the secret or not that it is set:\n%s", s)
	}
	if _, err := load(t, nil, map[string]string{"REGISTRAR_DATABASE_PASSWORD_FILE": path + ".missing"}); err == nil {
		t.Error("a missing *_FILE was accepted")
	}
}

func TestBadValuesAreRefusedTogether(t *testing.T) {
	_, err := load(t, []string{"--token-ttl", "forever", "--log-level", "loud", "--timezone", "Mars/Olympus"}, nil)
	if err == nil {
		t.Fatal("bad values were accepted")
	}
	for _, want := range []string{"--token-ttl", "--log-level", "--timezone"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s: %v", want, err)
		}
	}
}

func TestPlainHTTPOnlyOnLoopback(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{[]string{"--addr", "127.0.0.1:8080"}, true},
		{[]string{"--addr", "[::1]:8080"}, true},
		{[]string{"--addr", "localhost:8080"}, true},
		{[]string{"--addr", "0.0.0.0:8080"}, false},
		{[]string{"--addr", "10.1.2.3:8080"}, false},
		{[]string{"--addr", "0.0.0.0:8443", "--tls-self-signed"}, true},
		{[]string{"--addr", "nonsense"}, false},
	} {
		c, err := load(t, tc.args, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.ValidateListen(); (err == nil) != tc.ok {
			t.Errorf("%v: got error %v, want ok=%v", tc.args, err, tc.ok)
		}
	}
}

func TestEveryEnvironmentKeyIsListedOnce(t *testing.T) {
	plain, secret := EnvKeys()
	seen := map[string]bool{}
	for _, k := range append(plain, secret...) {
		if seen[k] || !strings.HasPrefix(k, "REGISTRAR_") {
			t.Errorf("environment key %q is listed twice or lacks the REGISTRAR_ prefix", k)
		}
		seen[k] = true
	}
	if len(seen) != len(Settings) {
		t.Errorf("got %d keys, want %d (one per setting)", len(seen), len(Settings))
	}
}
