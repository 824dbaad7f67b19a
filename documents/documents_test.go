package documents_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"registrar/documents"
	"registrar/records"
	"registrar/vault"
)

const pdf = "%PDF-1.7\n% transcript of SECRET-CONTENT\n"

type folder struct {
	*documents.Store
	v    *vault.Vault
	keys map[string][]byte
}

func newFolder(t *testing.T, max int64) *folder {
	t.Helper()
	v, err := vault.Open(vault.Options{Dir: filepath.Join(t.TempDir(), "keys")})
	if err != nil {
		t.Fatal(err)
	}
	s, err := documents.Open(filepath.Join(t.TempDir(), "documents"), v, documents.Options{MaxSize: max})
	if err != nil {
		t.Fatal(err)
	}
	return &folder{Store: s, v: v, keys: map[string][]byte{}}
}

func (f *folder) key(t *testing.T, subject string) []byte {
	t.Helper()
	if k, ok := f.keys[subject]; ok {
		return k
	}
	k, err := f.v.NewDocumentKey(subject)
	if err != nil {
		t.Fatal(err)
	}
	f.keys[subject] = k
	return k
}

func (f *folder) put(t *testing.T, subject, name, ct, body string) {
	t.Helper()
	p, err := f.Put(context.Background(), subject, name, f.key(t, subject), ct, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
}

func (f *folder) get(t *testing.T, subject, name string) (documents.Info, string, error) {
	t.Helper()
	r, err := f.Get(subject, name, f.key(t, subject))
	if err != nil {
		return documents.Info{}, "", err
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	return r.Info, string(b), err
}

// files lists every file under the folder, hidden ones included.
func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func code(err error) records.Code {
	var re *records.Error
	if errors.As(err, &re) {
		return re.Code
	}
	return ""
}

func TestRoundTripAndWhatIsOnDisk(t *testing.T) {
	t.Parallel()
	f := newFolder(t, 0)
	big := pdf + strings.Repeat("line of a long transcript\n", 20000)
	f.put(t, "student-1", "transcript-2026.pdf", "application/pdf", big)
	info, got, err := f.get(t, "student-1", "transcript-2026.pdf")
	if err != nil || got != big {
		t.Fatalf("read back %d bytes (%v), want %d", len(got), err, len(big))
	}
	if info.ContentType != "application/pdf" || info.Name != "transcript-2026.pdf" || info.CreatedAt == "" {
		t.Fatalf("info %+v", info)
	}
	for _, p := range files(t, f.Dir()) {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600", p, fi.Mode().Perm())
		}
		b, _ := os.ReadFile(p)
		for _, s := range []string{"SECRET-CONTENT", "transcript", "student-1", "application/pdf"} {
			if bytes.Contains(b, []byte(s)) || strings.Contains(p, s) {
				t.Errorf("%s: the file or its path shows %q", p, s)
			}
		}
	}
}

func TestRefusals(t *testing.T) {
	t.Parallel()
	f := newFolder(t, 1000)
	cases := []struct {
		name, doc, ct, body string
		want                records.Code
	}{
		{"a name that climbs out", "../../etc/passwd", "text/plain", "x", records.Invalid},
		{"a name with a slash", "a/b.pdf", "application/pdf", pdf, records.Invalid},
		{"a hidden name", ".profile", "text/plain", "x", records.Invalid},
		{"a name with ..", "a..b", "text/plain", "x", records.Invalid},
		{"an empty name", "", "text/plain", "x", records.Invalid},
		{"a name too long", strings.Repeat("a", 129), "text/plain", "x", records.Invalid},
		{"an unknown content type", "x.html", "text/html", "<html></html>", records.Invalid},
		{"a content type that does not parse", "x.pdf", "application/pdf; ;", pdf, records.Invalid},
		{"content that is not what it claims", "x.pdf", "application/pdf", "just text", records.Invalid},
		{"binary content claiming to be text", "x.txt", "text/plain", "\x00\x01\x02binary", records.Invalid},
		{"text in another charset", "x.txt", "text/plain; charset=latin1", "abc", records.Invalid},
		{"an empty document", "x.txt", "text/plain", "", records.Invalid},
		{"a document over the limit", "x.txt", "text/plain", strings.Repeat("a", 1001), records.TooLarge},
	}
	for _, c := range cases {
		t.Run(c.name+" is refused", func(t *testing.T) {
			p, err := f.Put(context.Background(), "s", c.doc, f.key(t, "s"), c.ct, strings.NewReader(c.body))
			if code(err) != c.want {
				t.Fatalf("got %v, %v; want a %s error", p, err, c.want)
			}
		})
	}
	if left := files(t, f.Dir()); len(left) != 0 {
		t.Fatalf("refused documents left files behind: %v", left)
	}
	t.Run("a document at the limit is accepted", func(t *testing.T) {
		f.put(t, "s", "x.txt", "text/plain; charset=utf-8", strings.Repeat("a", 1000))
	})
}

func TestWritesAreAtomic(t *testing.T) {
	t.Parallel()
	f := newFolder(t, 0)
	f.put(t, "s", "letter.txt", "text/plain", "first version")
	p, err := f.Put(context.Background(), "s", "letter.txt", f.key(t, "s"), "text/plain", strings.NewReader("second version"))
	if err != nil {
		t.Fatal(err)
	}
	if !p.Replace {
		t.Error("Replace is false for an existing document")
	}
	if _, got, _ := f.get(t, "s", "letter.txt"); got != "first version" {
		t.Fatalf("before commit: read %q, want the first version", got)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	if _, got, _ := f.get(t, "s", "letter.txt"); got != "second version" {
		t.Fatalf("after commit: read %q, want the second version", got)
	}
	p, err = f.Put(context.Background(), "s", "letter.txt", f.key(t, "s"), "text/plain", strings.NewReader("aborted"))
	if err != nil {
		t.Fatal(err)
	}
	p.Abort()
	if _, got, _ := f.get(t, "s", "letter.txt"); got != "second version" {
		t.Fatalf("after abort: read %q", got)
	}
	if n := len(files(t, f.Dir())); n != 1 {
		t.Fatalf("%d files, want 1 (no temporary files left)", n)
	}
}

func TestTamperedDocumentsDoNotOpen(t *testing.T) {
	t.Parallel()
	f := newFolder(t, 0)
	content := "%PDF-1.7\n" + strings.Repeat("x", 20000)
	f.put(t, "alice", "iep.pdf", "application/pdf", content)
	f.put(t, "bob", "iep.pdf", "application/pdf", "%PDF-1.7\nbob's")
	// Names on disk are keyed hashes: find a document's file as the one that changes
	// when the document is written again.
	path := func(subject, name string) string {
		t.Helper()
		old := map[string][]byte{}
		for _, p := range files(t, f.Dir()) {
			old[p], _ = os.ReadFile(p)
		}
		_, body, err := f.get(t, subject, name)
		if err != nil {
			t.Fatal(err)
		}
		f.put(t, subject, name, "application/pdf", body)
		for _, p := range files(t, f.Dir()) {
			if b, _ := os.ReadFile(p); !bytes.Equal(b, old[p]) {
				return p
			}
		}
		t.Fatal("document file not found")
		return ""
	}
	alice, bob := path("alice", "iep.pdf"), path("bob", "iep.pdf")
	orig, _ := os.ReadFile(alice)
	restore := func() {
		if err := os.WriteFile(alice, orig, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a file copied over another student's does not open", func(t *testing.T) {
		bobOrig, _ := os.ReadFile(bob)
		defer os.WriteFile(bob, bobOrig, 0o600)
		if err := os.WriteFile(bob, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, got, err := f.get(t, "bob", "iep.pdf"); !errors.Is(err, documents.ErrTampered) {
			t.Fatalf("got %d bytes, %v; want ErrTampered", len(got), err)
		}
	})
	t.Run("a file copied under another name does not open", func(t *testing.T) {
		f.put(t, "alice", "letter.pdf", "application/pdf", "%PDF-1.7\nletter")
		letter := path("alice", "letter.pdf")
		if err := os.WriteFile(letter, orig, 0o600); err != nil {
			t.Fatal(err)
		}
		if _, _, err := f.get(t, "alice", "letter.pdf"); !errors.Is(err, documents.ErrTampered) {
			t.Fatalf("got %v, want ErrTampered", err)
		}
	})
	t.Run("a byte changed in the middle fails the read", func(t *testing.T) {
		defer restore()
		bad := append([]byte{}, orig...)
		bad[len(bad)/2] ^= 1
		os.WriteFile(alice, bad, 0o600)
		if _, _, err := f.get(t, "alice", "iep.pdf"); !errors.Is(err, documents.ErrTampered) {
			t.Fatalf("got %v, want ErrTampered", err)
		}
	})
	t.Run("a truncated file fails the read", func(t *testing.T) {
		defer restore()
		os.WriteFile(alice, orig[:len(orig)-100], 0o600)
		if _, _, err := f.get(t, "alice", "iep.pdf"); !errors.Is(err, documents.ErrTampered) {
			t.Fatalf("got %v, want ErrTampered", err)
		}
	})
	for name, size := range map[string]uint64{"larger": uint64(len(content) + 1), "smaller": uint64(len(content) - 1)} {
		t.Run("a "+name+" size fails the read, and a copy out stops short of that size", func(t *testing.T) {
			defer restore()
			bad := append([]byte{}, orig...)
			binary.BigEndian.PutUint64(bad[len(bad)-8:], size)
			os.WriteFile(alice, bad, 0o600)
			if _, _, err := f.get(t, "alice", "iep.pdf"); !errors.Is(err, documents.ErrTampered) {
				t.Fatalf("read: got %v, want ErrTampered", err)
			}
			r, err := f.Get("alice", "iep.pdf", f.key(t, "alice"))
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			var out bytes.Buffer
			n, err := r.WriteTo(&out)
			if !errors.Is(err, documents.ErrTampered) || n >= r.Info.Size {
				t.Fatalf("WriteTo: wrote %d of a claimed %d bytes, %v; want ErrTampered before the claimed size", n, r.Info.Size, err)
			}
		})
	}
	t.Run("a copy out of an intact document is whole", func(t *testing.T) {
		r, err := f.Get("alice", "iep.pdf", f.key(t, "alice"))
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		var out bytes.Buffer
		if n, err := r.WriteTo(&out); err != nil || n != r.Info.Size || out.String() != content {
			t.Fatalf("wrote %d of %d bytes, %v", n, r.Info.Size, err)
		}
	})
	t.Run("without the key nothing opens", func(t *testing.T) {
		if _, err := f.Get("alice", "iep.pdf", nil); !errors.Is(err, documents.ErrTampered) {
			t.Fatalf("got %v, want ErrTampered", err)
		}
	})
	t.Run("the intact file still opens", func(t *testing.T) {
		if _, got, err := f.get(t, "alice", "iep.pdf"); err != nil || got != content {
			t.Fatalf("got %d bytes, %v", len(got), err)
		}
	})
}

func TestDeleteAndDeleteSubject(t *testing.T) {
	t.Parallel()
	f := newFolder(t, 0)
	f.put(t, "s", "a.txt", "text/plain", "a")
	f.put(t, "s", "b.txt", "text/plain", "b")
	f.put(t, "other", "a.txt", "text/plain", "other")
	if n, err := f.Count("s"); err != nil || n != 2 {
		t.Fatalf("count %d, %v; want 2", n, err)
	}
	if err := f.Delete("s", "a.txt"); err != nil {
		t.Fatal(err)
	}
	if err := f.Delete("s", "a.txt"); !errors.Is(err, documents.ErrNotFound) {
		t.Fatalf("second delete: got %v, want ErrNotFound", err)
	}
	if _, _, err := f.get(t, "s", "a.txt"); !errors.Is(err, documents.ErrNotFound) {
		t.Fatalf("get after delete: got %v, want ErrNotFound", err)
	}
	if n, err := f.DeleteSubject("s"); err != nil || n != 1 {
		t.Fatalf("DeleteSubject: %d, %v; want 1", n, err)
	}
	if n, _ := f.Count("s"); n != 0 {
		t.Fatalf("count after DeleteSubject: %d", n)
	}
	if _, got, err := f.get(t, "other", "a.txt"); err != nil || got != "other" {
		t.Fatalf("another student's document: %q, %v", got, err)
	}
}
