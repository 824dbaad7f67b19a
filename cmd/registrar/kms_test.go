package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"registrar/vault/awskms/kmstest"
)

// runMainOut runs Main to completion and returns stdout, stderr and the exit code.
func runMainOut(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	var out, errb syncBuffer
	code := Main(context.Background(), args, strings.NewReader(""), &out, &errb, getenvFrom(env))
	return out.String(), errb.String(), code
}

// kmsEnv is the environment of a registrar whose KEK is a new key in local-kms.
func kmsEnv(t *testing.T) map[string]string {
	t.Helper()
	ep := kmstest.Endpoint(t)
	return map[string]string{
		"REGISTRAR_DATA":         filepath.Join(t.TempDir(), "data"),
		"REGISTRAR_LOG_LEVEL":    "warn",
		"REGISTRAR_KEK_URI":      kmstest.NewKey(t, ep),
		"REGISTRAR_AWS_ENDPOINT": ep,
		"AWS_ACCESS_KEY_ID":      "registrar-test",
		"AWS_SECRET_ACCESS_KEY":  "registrar-test",
	}
}

// TestServeWithKMSKEK is the AWS deployment's key setup on local-kms: the service keyset
// made by `keys init` and injected as REGISTRAR_KEYSET, a district imported (data keys
// wrapped by KMS), and the server started with --kek-uri serving reads of sealed fields.
func TestServeWithKMSKEK(t *testing.T) {
	t.Parallel()
	env := kmsEnv(t)
	dir := env["REGISTRAR_DATA"]

	_, stderr, code := runMainOut(t, env, "migrate")
	if code == 0 || !strings.Contains(stderr, "REGISTRAR_KEYSET") || !strings.Contains(stderr, "registrar keys init --kek-uri "+env["REGISTRAR_KEK_URI"]) {
		t.Fatalf("without a service keyset: exit %d, stderr %q; want a refusal that says how to make one", code, stderr)
	}

	keyset, stderr, code := runMainOut(t, env, "keys", "init")
	if code != 0 {
		t.Fatalf("keys init: exit %d: %s", code, stderr)
	}
	var parts map[string]string
	if err := json.Unmarshal([]byte(keyset), &parts); err != nil || parts["prf"] == "" || parts["signature"] == "" || parts["jwt"] == "" {
		t.Fatalf("keys init printed %q on stdout, want the keyset JSON alone (%v)", keyset, err)
	}
	env["REGISTRAR_KEYSET"] = strings.TrimSpace(keyset)

	pkg := filepath.Join(t.TempDir(), "pkg")
	if _, stderr, code := runMainOut(t, env, "generate", "--out", pkg, "--students", "30", "--seed", "11"); code != 0 {
		t.Fatalf("generate: exit %d: %s", code, stderr)
	}
	if _, stderr, code := runMainOut(t, env, "import", pkg); code != 0 {
		t.Fatalf("import: exit %d: %s", code, stderr)
	}
	out, stderr, code := runMainOut(t, env, "clients", "create", "--name", "kms", "--scope", "roster.readonly", "--json")
	if code != 0 {
		t.Fatalf("clients create: exit %d: %s", code, stderr)
	}
	var cred struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.Unmarshal([]byte(out), &cred); err != nil || cred.ID == "" {
		t.Fatalf("clients create --json printed %q", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "kek.json")); !os.IsNotExist(err) {
		t.Fatalf("a local KEK file exists with --kek-uri (stat: %v)", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys", "service.json")); !os.IsNotExist(err) {
		t.Fatalf("a service keyset file was written although REGISTRAR_KEYSET is set (stat: %v)", err)
	}

	base, stop := serveOnLoopback(t, env)
	defer stop()
	tok := clientToken(t, base, cred.ID, cred.Secret)
	get := func(path string, into any) int {
		t.Helper()
		req, _ := http.NewRequest("GET", base+path, nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		return doJSON(t, req, into)
	}
	const R = "/ims/oneroster/rostering/v1p2"
	var list struct {
		Users []struct {
			SourcedID string `json:"sourcedId"`
			Email     string `json:"email"`
		}
	}
	if status := get(R+"/students?limit=50", &list); status != 200 || len(list.Users) == 0 {
		t.Fatalf("students: status %d, %d users", status, len(list.Users))
	}
	var id, email string
	for _, u := range list.Users {
		if u.Email != "" {
			id, email = u.SourcedID, u.Email
			break
		}
	}
	if email == "" {
		t.Fatal("no student's email came back: the sealed fields did not open under the KMS-wrapped data keys")
	}
	// The email filter goes through the blind index: the service keyset's PRF, unwrapped by KMS.
	var found struct{ Users []struct{ SourcedID string } }
	if status := get(R+"/users?filter="+url.QueryEscape("email='"+email+"'"), &found); status != 200 || len(found.Users) != 1 || found.Users[0].SourcedID != id {
		t.Fatalf("filter by email: status %d, %+v; want %s", status, found.Users, id)
	}
	var one struct{ User struct{ Email string } }
	if status := get(R+"/users/"+id, &one); status != 200 || one.User.Email != email {
		t.Fatalf("GET user: status %d, email %q; want %q", status, one.User.Email, email)
	}
}

// TestKeysRotateWithKMSKEK: KMS rotates its own key material and keeps the old, so
// `keys rotate` has nothing to do; it says so and leaves no rotation behind.
func TestKeysRotateWithKMSKEK(t *testing.T) {
	t.Parallel()
	env := kmsEnv(t)
	if _, stderr, code := runMainOut(t, env, "keys", "init", "--save"); code != 0 {
		t.Fatalf("keys init --save: exit %d: %s", code, stderr)
	}
	_, stderr, code := runMainOut(t, env, "keys", "rotate")
	if code != 1 || !strings.Contains(stderr, "rotate it in KMS") {
		t.Fatalf("keys rotate: exit %d, stderr %q; want exit 1 and a refusal that names KMS", code, stderr)
	}
	out, stderr, code := runMainOut(t, env, "keys", "status")
	if code != 0 {
		t.Fatalf("keys status: exit %d: %s", code, stderr)
	}
	if !strings.Contains(out, "AWS KMS key "+env["REGISTRAR_KEK_URI"]) || strings.Contains(out, "rotation") {
		t.Fatalf("keys status after the refused rotation:\n%s\nwant the KMS key named and no rotation recorded", out)
	}
}

// TestKeysInitSaveForOneMachine: without Secrets Manager, the keyset wrapped by KMS is
// kept in DATA/keys/service.json, made once and never replaced.
func TestKeysInitSaveForOneMachine(t *testing.T) {
	t.Parallel()
	env := kmsEnv(t)
	out, stderr, code := runMainOut(t, env, "keys", "init", "--save")
	path := filepath.Join(env["REGISTRAR_DATA"], "keys", "service.json")
	if code != 0 || !strings.Contains(out, path) {
		t.Fatalf("keys init --save: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("service keyset file: %v, mode %v; want 0600", err, fi.Mode().Perm())
	}
	before, _ := os.ReadFile(path)
	if _, stderr, code := runMainOut(t, env, "keys", "init", "--save"); code != 1 || !strings.Contains(stderr, "exists") {
		t.Fatalf("second keys init --save: exit %d, stderr %q; want a refusal", code, stderr)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("the second keys init --save replaced the service keyset")
	}
	if out, stderr, code := runMainOut(t, env, "migrate"); code != 0 || !strings.Contains(out, "schema is current") {
		t.Fatalf("migrate with the saved keyset: exit %d, stdout %q, stderr %q", code, out, stderr)
	}
	if _, err := os.Stat(filepath.Join(env["REGISTRAR_DATA"], "keys", "kek.json")); !os.IsNotExist(err) {
		t.Fatalf("a local KEK file exists with --kek-uri (stat: %v)", err)
	}
}

// TestKMSStartupErrors: a KEK that cannot be used stops every command at startup with
// an error that says what to fix, never a panic or a half-started server.
func TestKMSStartupErrors(t *testing.T) {
	t.Parallel()
	env := kmsEnv(t)
	keyset, stderr, code := runMainOut(t, env, "keys", "init")
	if code != 0 {
		t.Fatalf("keys init: exit %d: %s", code, stderr)
	}
	env["REGISTRAR_KEYSET"] = strings.TrimSpace(keyset)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String()
	ln.Close()
	other := kmstest.NewKey(t, env["REGISTRAR_AWS_ENDPOINT"])
	missing := regexp.MustCompile(`key/[0-9a-f-]+$`).ReplaceAllString(env["REGISTRAR_KEK_URI"], "key/00000000-0000-4000-8000-000000000000")

	for _, c := range []struct {
		name string
		set  map[string]string
		args []string
		code int
		want []string
	}{
		{"a key ARN that names no key", map[string]string{"REGISTRAR_KEK_URI": missing}, []string{"serve", "--addr", "127.0.0.1:0"}, 1,
			[]string{"registrar serve: aws kms:", "cannot be used", "no such key"}},
		{"an endpoint nothing listens on", map[string]string{"REGISTRAR_AWS_ENDPOINT": closed}, []string{"serve", "--addr", "127.0.0.1:0"}, 1,
			[]string{"cannot reach the KMS at " + closed}},
		{"a keyset wrapped by another key", map[string]string{"REGISTRAR_KEK_URI": other}, []string{"migrate"}, 1,
			[]string{"does not open under this KEK", "registrar keys init"}},
		{"an alias instead of a key ARN", map[string]string{"REGISTRAR_KEK_URI": "aws-kms://arn:aws:kms:us-east-1:111122223333:alias/kek"}, []string{"migrate"}, 1,
			[]string{"not an alias"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			e := map[string]string{}
			for k, v := range env {
				e[k] = v
			}
			e["REGISTRAR_DATA"] = filepath.Join(t.TempDir(), "data")
			for k, v := range c.set {
				e[k] = v
			}
			out, stderr, code := runMainOut(t, e, c.args...)
			if code != c.code {
				t.Fatalf("exit %d, want %d; stdout %q, stderr %q", code, c.code, out, stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr %q does not say %q", stderr, w)
				}
			}
			if strings.Contains(out, "listening on") {
				t.Errorf("the server started: %q", out)
			}
		})
	}

	t.Run("keys init without a KMS key is refused", func(t *testing.T) {
		t.Parallel()
		_, stderr, code := runMainOut(t, map[string]string{"REGISTRAR_DATA": filepath.Join(t.TempDir(), "data")}, "keys", "init")
		if code != 2 || !strings.Contains(stderr, "--kek-uri aws-kms://arn:aws:kms:REGION:ACCOUNT:key/ID") {
			t.Fatalf("exit %d, stderr %q; want exit 2 and the --kek-uri it needs", code, stderr)
		}
	})

	t.Run("a data directory with a local KEK is refused", func(t *testing.T) {
		t.Parallel()
		local := map[string]string{"REGISTRAR_DATA": filepath.Join(t.TempDir(), "data"), "REGISTRAR_LOG_LEVEL": "warn"}
		if _, stderr, code := runMainOut(t, local, "migrate"); code != 0 {
			t.Fatalf("migrate with the local KEK: exit %d: %s", code, stderr)
		}
		e := map[string]string{}
		for k, v := range env {
			e[k] = v
		}
		e["REGISTRAR_DATA"] = local["REGISTRAR_DATA"]
		_, stderr, code := runMainOut(t, e, "migrate")
		if code != 1 || !strings.Contains(stderr, "holds a local key-encryption key") {
			t.Fatalf("exit %d, stderr %q; want a refusal that names kek.json", code, stderr)
		}
	})
}

// serveOnLoopback runs `registrar serve` on 127.0.0.1:0 until the returned stop.
func serveOnLoopback(t *testing.T, env map[string]string) (string, func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	var stderr syncBuffer
	done := make(chan int, 1)
	go func() {
		done <- Main(ctx, []string{"serve", "--addr", "127.0.0.1:0"}, strings.NewReader(""), pw, &stderr, getenvFrom(env))
		pw.Close()
	}()
	sc := bufio.NewScanner(pr)
	re := regexp.MustCompile(`listening on (http://\S+)`)
	base := ""
	for sc.Scan() {
		if m := re.FindStringSubmatch(sc.Text()); m != nil {
			base = m[1]
			break
		}
	}
	if base == "" {
		cancel()
		t.Fatalf("serve printed no address; exit %d; stderr: %s", <-done, stderr.String())
	}
	go io.Copy(io.Discard, pr) //nolint:errcheck // drain the rest of stdout
	return base, func() {
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Errorf("serve exited %d after shutdown, want 0; stderr: %s", code, stderr.String())
			}
		case <-time.After(30 * time.Second):
			t.Error("serve did not stop within 30s of the signal")
		}
	}
}

// clientToken gets an access token by client credentials.
func clientToken(t *testing.T, base, id, secret string) string {
	t.Helper()
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequest("POST", base+"/oauth/token", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(id, secret)
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if status := doJSON(t, req, &tok); status != 200 || tok.AccessToken == "" {
		t.Fatalf("token: status %d", status)
	}
	return tok.AccessToken
}
