// Package documents keeps students' documents (transcripts, IEPs, letters) as files
// in a folder (DATA/documents, or an EFS mount), each encrypted with Tink streaming
// AEAD under its student's document key and bound to its student and name.
//
// Nothing on disk says whose a file is or what it is called: a student's folder and
// a document's file are named by keyed hashes (the vault's blind index), and the
// content type and creation time travel inside the ciphertext. Writes go to a
// temporary file that is synced and renamed into place, so a reader sees the old
// document or the new one, never half of one. The caller authorizes, audits and
// supplies the student's wrapped document key (kept in the database beside the data
// key): destroying that key makes every copy of the files unreadable.
//
// documents imports records and the vault's binding; never the store or the API.
package documents

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"mime"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/tink-crypto/tink-go/v2/tink"

	"registrar/records"
	"registrar/vault"
)

// Keys is what the folder needs from the vault.
type Keys interface {
	// DocumentKey unwraps a student's document key (vault.ErrDecrypt if it does not).
	DocumentKey(subject string, wrapped []byte) (tink.StreamingAEAD, error)
	// BlindIndex is a keyed hash, used for file and folder names.
	BlindIndex(field, value string) []byte
}

// DefaultMaxSize is the largest document accepted when Options.MaxSize is 0.
const DefaultMaxSize = 25 << 20

// Options configure a Store.
type Options struct {
	// MaxSize bounds a document's size in bytes (default DefaultMaxSize).
	MaxSize int64
}

// Store is a folder of encrypted documents.
type Store struct {
	dir  string
	keys Keys
	max  int64
	now  func() time.Time
}

// Open returns the document folder at dir, creating it 0700 if needed.
func Open(dir string, keys Keys, opt Options) (*Store, error) {
	if dir == "" {
		return nil, errors.New("documents: the folder is not set")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("documents: create %s: %w", dir, err)
	}
	if opt.MaxSize <= 0 {
		opt.MaxSize = DefaultMaxSize
	}
	return &Store{dir: dir, keys: keys, max: opt.MaxSize, now: time.Now}, nil
}

// MaxSize is the largest document accepted.
func (s *Store) MaxSize() int64 { return s.max }

// Dir is the folder.
func (s *Store) Dir() string { return s.dir }

// Info describes a stored document.
type Info struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType"`
	CreatedAt   string `json:"createdAt"`
	Size        int64  `json:"size"`
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$`)

// ValidName checks a document name: 1 to 128 letters, digits, '.', '_' or '-',
// starting with a letter or digit, without "..". It never reaches the file system
// (file names are keyed hashes), but a strict name keeps URLs, logs and the audit
// trail unambiguous.
func ValidName(name string) error {
	if !nameRE.MatchString(name) || strings.Contains(name, "..") {
		return &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: "name",
			Message: "a document name is 1 to 128 letters, digits, '.', '_' or '-', starts with a letter or digit, and has no \"..\""}
	}
	return nil
}

// Accepted content types, each with the signature its first bytes must have
// (checked by the standard library's sniffer); "" means any text.
var accepted = map[string]string{
	"application/pdf": "application/pdf",
	"image/png":       "image/png",
	"image/jpeg":      "image/jpeg",
	"text/plain":      "text/plain",
	// Word documents are zip files.
	"application/vnd.openxmlformats-officedocument.wordprocessingml.document": "application/zip",
}

// AcceptedTypes lists the content types a document may have.
func AcceptedTypes() []string {
	out := make([]string, 0, len(accepted))
	for t := range accepted {
		out = append(out, t)
	}
	return out
}

func checkType(declared string) (string, error) {
	mt, params, err := mime.ParseMediaType(declared)
	if err != nil || accepted[mt] == "" {
		return "", &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: "Content-Type",
			Message: "Content-Type must be one of application/pdf, image/png, image/jpeg, text/plain, or a Word document (.docx)"}
	}
	if cs, ok := params["charset"]; ok && mt == "text/plain" {
		if !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "us-ascii") {
			return "", &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: "Content-Type", Message: "text documents must be UTF-8"}
		}
		return "text/plain; charset=utf-8", nil
	}
	return mt, nil
}

func sniffMatches(contentType string, head []byte) bool {
	mt, _, _ := mime.ParseMediaType(contentType)
	want := accepted[mt]
	got, _, _ := mime.ParseMediaType(http.DetectContentType(head))
	if want == "text/plain" {
		return got == "text/plain" && !bytes.ContainsRune(head, 0)
	}
	return got == want
}

// paths returns the student's folder and the document's file: keyed hashes, so the
// folder reveals neither student ids nor document names.
func (s *Store) paths(subject, name string) (string, string) {
	d := filepath.Join(s.dir, hex.EncodeToString(s.keys.BlindIndex("document-folder", subject)))
	f := filepath.Join(d, hex.EncodeToString(s.keys.BlindIndex("document-file", subject+"\x00"+name)))
	return d, f
}

// magic starts every document file: the format, so that a later one can be told apart.
var magic = []byte("RGD1")

// header is the first, encrypted part of a document.
type header struct {
	Name        string `json:"name"`
	ContentType string `json:"contentType"`
	CreatedAt   string `json:"createdAt"`
}

// Pending is an encrypted document written to a temporary file, not yet in place:
// the caller audits, then commits (or aborts).
type Pending struct {
	Info    Info
	Replace bool // a document of that name exists and will be replaced
	tmp     string
	dst     string
	dir     string
}

// Commit puts the document in place (rename, then sync of the folder).
func (p *Pending) Commit() error {
	if err := os.Rename(p.tmp, p.dst); err != nil {
		os.Remove(p.tmp)
		return fmt.Errorf("documents: put in place: %w", err)
	}
	return syncDir(p.dir)
}

// Abort discards the temporary file.
func (p *Pending) Abort() { os.Remove(p.tmp) }

// Put encrypts body as the document name of subject into a temporary file and
// returns it pending. It checks the name, the declared content type against the
// first bytes, and the size limit (records.TooLarge).
func (s *Store) Put(ctx context.Context, subject, name string, wrappedKey []byte, contentType string, body io.Reader) (*Pending, error) {
	if err := ValidName(name); err != nil {
		return nil, err
	}
	ct, err := checkType(contentType)
	if err != nil {
		return nil, err
	}
	key, err := s.keys.DocumentKey(subject, wrappedKey)
	if err != nil {
		return nil, &records.Error{Code: records.Internal, Message: "internal error", Err: fmt.Errorf("documents: %w", err)}
	}
	dir, dst := s.paths(subject, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("documents: create folder: %w", err)
	}
	_, statErr := os.Stat(dst)
	br := bufio.NewReaderSize(body, 512)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if len(head) == 0 {
		return nil, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Message: "the document is empty"}
	}
	if !sniffMatches(ct, head) {
		return nil, &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: "Content-Type",
			Message: fmt.Sprintf("the content does not look like %s", ct)}
	}
	tmp, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return nil, fmt.Errorf("documents: temporary file: %w", err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return nil, fmt.Errorf("documents: chmod: %w", err)
	}
	if _, err := tmp.Write(magic); err != nil {
		return nil, fmt.Errorf("documents: write: %w", err)
	}
	enc, err := key.NewEncryptingWriter(tmp, vault.DocumentBinding(subject, name))
	if err != nil {
		return nil, fmt.Errorf("documents: encrypt: %w", err)
	}
	h := header{Name: name, ContentType: ct, CreatedAt: records.FormatDateTime(s.now())}
	hb, _ := json.Marshal(h) // plain strings: cannot fail
	var lenBuf [binary.MaxVarintLen64]byte
	if _, err := enc.Write(lenBuf[:binary.PutUvarint(lenBuf[:], uint64(len(hb)))]); err != nil {
		return nil, fmt.Errorf("documents: write: %w", err)
	}
	if _, err := enc.Write(hb); err != nil {
		return nil, fmt.Errorf("documents: write: %w", err)
	}
	n, err := copyCtx(ctx, enc, io.LimitReader(br, s.max+1))
	if err != nil {
		return nil, err
	}
	if n > s.max {
		return nil, &records.Error{Code: records.TooLarge, CodeMinor: "invaliddata", Message: fmt.Sprintf("the document is larger than %d bytes", s.max)}
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("documents: encrypt: %w", err)
	}
	// The size, after the ciphertext: readers announce it (Content-Length) and check
	// it against what decrypts. It is not secret, and a false one only fails the read.
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(n))
	if _, err := tmp.Write(size[:]); err != nil {
		return nil, fmt.Errorf("documents: write: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return nil, fmt.Errorf("documents: sync: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return nil, fmt.Errorf("documents: close: %w", err)
	}
	ok = true
	return &Pending{Info: Info{Name: name, ContentType: ct, CreatedAt: h.CreatedAt, Size: n}, Replace: statErr == nil, tmp: tmp.Name(), dst: dst, dir: dir}, nil
}

// copyCtx copies until EOF, the context ends or a read fails (a client that went
// away, or a body over the server's limit).
func copyCtx(ctx context.Context, dst io.Writer, src io.Reader) (int64, error) {
	buf := make([]byte, 32<<10)
	var n int64
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, err := dst.Write(buf[:m]); err != nil {
				return n, fmt.Errorf("documents: write: %w", err)
			}
			n += int64(m)
		}
		if errors.Is(rerr, io.EOF) {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// ErrNotFound is returned for a document that does not exist.
var ErrNotFound = errors.New("documents: no such document")

// Reader is an open document: its Info (Size included), then its content, decrypted
// as it is read. A read returns ErrTampered if the file was altered anywhere, up to
// its last byte, or holds more or fewer bytes than its size says.
type Reader struct {
	Info Info
	r    io.Reader
	f    *os.File
	n    int64
}

func (r *Reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.n += int64(n)
	if r.n > r.Info.Size {
		return 0, ErrTampered
	}
	if errors.Is(err, io.EOF) && r.n != r.Info.Size {
		return n, ErrTampered
	}
	return n, err
}

// WriteTo copies the document to w, holding back its last chunk until the whole file
// has verified: a response that announced Info.Size as its length then ends short on
// any tampering, so a client never takes an altered document for a complete one.
func (r *Reader) WriteTo(w io.Writer) (int64, error) {
	var written int64
	cur, next := make([]byte, 32<<10), make([]byte, 32<<10)
	held := 0
	for {
		n, err := io.ReadFull(r, next)
		if errors.Is(err, io.ErrUnexpectedEOF) {
			err = io.EOF
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return written, err
		}
		if n > 0 && held > 0 {
			m, werr := w.Write(cur[:held])
			written += int64(m)
			if werr != nil {
				return written, werr
			}
			held = 0
		}
		if n > 0 {
			cur, next = next, cur
			held = n
		}
		if errors.Is(err, io.EOF) {
			// Read reports a short or long document as ErrTampered, so EOF here means
			// every segment verified and the size matched.
			if held > 0 {
				m, werr := w.Write(cur[:held])
				written += int64(m)
				if werr != nil {
					return written, werr
				}
			}
			return written, nil
		}
	}
}

// Close closes the file.
func (r *Reader) Close() error { return r.f.Close() }

// ErrTampered is returned for a document that does not decrypt under its student's
// key and name: altered, copied from another student or name, or its key destroyed.
var ErrTampered = errors.New("documents: the document does not decrypt under this student's key and name (altered, or copied from elsewhere)")

// Get opens the document name of subject. The first part (the header) is decrypted
// and checked before it returns, so a file copied from another student or name
// fails here, before anything is sent.
func (s *Store) Get(subject, name string, wrappedKey []byte) (*Reader, error) {
	if err := ValidName(name); err != nil {
		return nil, ErrNotFound
	}
	_, path := s.paths(subject, name)
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("documents: open: %w", err)
	}
	r, err := s.open(f, subject, name, wrappedKey)
	if err != nil {
		f.Close()
		return nil, err
	}
	return r, nil
}

func (s *Store) open(f *os.File, subject, name string, wrappedKey []byte) (*Reader, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("documents: stat: %w", err)
	}
	body := fi.Size() - int64(len(magic)) - 8
	if body <= 0 {
		return nil, ErrTampered
	}
	var sz [8]byte
	if _, err := f.ReadAt(sz[:], fi.Size()-8); err != nil {
		return nil, ErrTampered
	}
	size := binary.BigEndian.Uint64(sz[:])
	if size > 1<<50 {
		return nil, ErrTampered
	}
	r, err := s.decrypt(io.LimitReader(f, fi.Size()-8), subject, name, wrappedKey)
	if err != nil {
		return nil, err
	}
	r.f, r.Info.Size = f, int64(size)
	return r, nil
}

func (s *Store) decrypt(f io.Reader, subject, name string, wrappedKey []byte) (*Reader, error) {
	key, err := s.keys.DocumentKey(subject, wrappedKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTampered, err)
	}
	br := bufio.NewReader(f)
	m := make([]byte, len(magic))
	if _, err := io.ReadFull(br, m); err != nil || !bytes.Equal(m, magic) {
		return nil, ErrTampered
	}
	dec, err := key.NewDecryptingReader(br, vault.DocumentBinding(subject, name))
	if err != nil {
		return nil, ErrTampered
	}
	dr := bufio.NewReader(dec)
	hl, err := binary.ReadUvarint(dr)
	if err != nil || hl > 4096 {
		return nil, ErrTampered
	}
	hb := make([]byte, hl)
	if _, err := io.ReadFull(dr, hb); err != nil {
		return nil, ErrTampered
	}
	var h header
	if err := json.Unmarshal(hb, &h); err != nil || h.Name != name {
		return nil, ErrTampered
	}
	return &Reader{Info: Info{Name: h.Name, ContentType: h.ContentType, CreatedAt: h.CreatedAt}, r: tamperReader{dr}}, nil
}

// tamperReader turns a decryption failure in the middle of a document into ErrTampered.
type tamperReader struct{ r io.Reader }

func (t tamperReader) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		return n, ErrTampered
	}
	return n, err
}

// Delete removes the document name of subject; ErrNotFound if there is none.
func (s *Store) Delete(subject, name string) error {
	if err := ValidName(name); err != nil {
		return ErrNotFound
	}
	dir, path := s.paths(subject, name)
	err := os.Remove(path)
	if errors.Is(err, fs.ErrNotExist) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("documents: delete: %w", err)
	}
	return syncDir(dir)
}

// Exists reports whether the document name of subject exists.
func (s *Store) Exists(subject, name string) (bool, error) {
	if ValidName(name) != nil {
		return false, nil
	}
	_, path := s.paths(subject, name)
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("documents: stat: %w", err)
	}
	return true, nil
}

// Count returns how many documents subject has.
func (s *Store) Count(subject string) (int, error) {
	dir, _ := s.paths(subject, "x")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("documents: list: %w", err)
	}
	n := 0
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), ".") {
			n++
		}
	}
	return n, nil
}

// DeleteSubject removes every document of subject (after a purge) and returns how
// many there were.
func (s *Store) DeleteSubject(subject string) (int, error) {
	n, err := s.Count(subject)
	if err != nil {
		return 0, err
	}
	dir, _ := s.paths(subject, "x")
	if err := os.RemoveAll(dir); err != nil {
		return 0, fmt.Errorf("documents: delete folder: %w", err)
	}
	return n, syncDir(s.dir)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("documents: sync folder: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("documents: sync folder: %w", err)
	}
	return nil
}
