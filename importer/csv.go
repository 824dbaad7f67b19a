package importer

import (
	"archive/zip"
	"bufio"
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"unicode/utf8"

	"registrar/oneroster/csvspec"
)

// Package is an opened CSV package: a folder, or a zip archive whose files sit at its
// root or inside one top-level folder.
type Package struct {
	dir   string
	zr    *zip.ReadCloser
	files map[string]*zip.File
	names []string // every regular file, by base name, sorted
	sizes map[string]int64
}

// OpenPackage opens the folder or zip file at p.
func OpenPackage(p string) (*Package, error) {
	fi, err := os.Stat(p)
	if err != nil {
		return nil, fmt.Errorf("open package: %w", err)
	}
	pkg := &Package{sizes: map[string]int64{}}
	if fi.IsDir() {
		pkg.dir = p
		ents, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("open package: %w", err)
		}
		for _, e := range ents {
			if !e.Type().IsRegular() {
				continue
			}
			info, err := e.Info()
			if err != nil {
				return nil, fmt.Errorf("open package: %w", err)
			}
			pkg.names = append(pkg.names, e.Name())
			pkg.sizes[e.Name()] = info.Size()
		}
		return pkg, nil
	}
	zr, err := zip.OpenReader(p)
	if err != nil {
		return nil, fmt.Errorf("open package %s: not a folder or a readable zip archive: %w", filepath.Base(p), err)
	}
	pkg.zr = zr
	pkg.files = map[string]*zip.File{}
	// The files may sit inside one top-level folder (a zipped folder): find manifest.csv.
	prefix, depth := "", -1
	for _, f := range zr.File {
		if path.Base(f.Name) != csvspec.ManifestFileName || strings.HasPrefix(f.Name, "__MACOSX/") {
			continue
		}
		if d := strings.Count(f.Name, "/"); d <= 1 && (depth < 0 || d < depth) {
			depth, prefix = d, strings.TrimSuffix(f.Name, csvspec.ManifestFileName)
		}
	}
	for _, f := range zr.File {
		if f.FileInfo().IsDir() || !strings.HasPrefix(f.Name, prefix) {
			continue
		}
		name := strings.TrimPrefix(f.Name, prefix)
		if strings.Contains(name, "/") || strings.HasPrefix(name, "._") {
			continue // deeper folders and resource forks are not part of the package
		}
		if _, dup := pkg.files[name]; dup {
			zr.Close()
			return nil, fmt.Errorf("open package %s: the archive holds %s twice", filepath.Base(p), name)
		}
		pkg.files[name] = f
		pkg.names = append(pkg.names, name)
		pkg.sizes[name] = int64(f.UncompressedSize64)
	}
	sort.Strings(pkg.names)
	return pkg, nil
}

// Close releases the package.
func (p *Package) Close() error {
	if p.zr != nil {
		return p.zr.Close()
	}
	return nil
}

// Names lists the package's files.
func (p *Package) Names() []string { return p.names }

// Has reports whether the package holds the named file.
func (p *Package) Has(name string) bool { _, ok := p.sizes[name]; return ok }

// Size returns the (uncompressed) size of the named file.
func (p *Package) Size(name string) int64 { return p.sizes[name] }

// Open opens one file of the package for reading.
func (p *Package) Open(name string) (io.ReadCloser, error) {
	if !p.Has(name) {
		return nil, fmt.Errorf("%s is not in the package", name)
	}
	if p.zr != nil {
		return p.files[name].Open()
	}
	return os.Open(filepath.Join(p.dir, name))
}

// counter counts bytes read, for progress; read from other goroutines.
type counter struct {
	r io.Reader
	n atomic.Int64
}

func (c *counter) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// csvReader streams the records of one CSV file: RFC 4180 quoting (fields with commas,
// quotes and line breaks), CRLF or LF line ends, a leading UTF-8 byte order mark.
type csvReader struct {
	file string
	cr   *csv.Reader
	cnt  *counter
	line int // line of the current record's first field
}

func newCSVReader(r io.Reader, file string) *csvReader {
	cnt := &counter{r: r}
	br := bufio.NewReaderSize(cnt, 64<<10)
	if b, err := br.Peek(3); err == nil && bytes.Equal(b, []byte("\uFEFF")) {
		_, _ = br.Discard(3) // peeked: cannot fail
	}
	cr := csv.NewReader(br)
	cr.FieldsPerRecord = -1
	cr.ReuseRecord = true
	return &csvReader{file: file, cr: cr, cnt: cnt}
}

// errSyntax is a CSV syntax error at a line: reading the file stops there.
type errSyntax struct {
	line int
	msg  string
}

func (e *errSyntax) Error() string { return fmt.Sprintf("line %d: %s", e.line, e.msg) }

// next returns the next record (valid until the following call) or io.EOF.
func (r *csvReader) next() ([]string, error) {
	rec, err := r.cr.Read()
	if err != nil {
		var pe *csv.ParseError
		if errors.As(err, &pe) {
			msg := pe.Err.Error()
			switch {
			case errors.Is(pe.Err, csv.ErrBareQuote):
				msg = "a quote (\") inside a field that is not quoted: quote the whole field and double the inner quote"
			case errors.Is(pe.Err, csv.ErrQuote):
				msg = "a quoted field is not closed, or text follows its closing quote"
			}
			return nil, &errSyntax{line: pe.StartLine, msg: msg}
		}
		return nil, err
	}
	r.line, _ = r.cr.FieldPos(0)
	return rec, nil
}

// fieldLine returns the line on which field i of the current record starts.
func (r *csvReader) fieldLine(i int) int {
	l, _ := r.cr.FieldPos(i)
	return l
}

// lines locates a record in its file: the line of its first field, and the line of
// each field when the record spans several lines (a quoted field with line breaks).
type lines struct {
	line   int
	fields []int // nil when every field starts on line
}

func (l *lines) field(i int) int {
	if l.fields == nil || i < 0 || i >= len(l.fields) {
		return l.line
	}
	return l.fields[i]
}

// locate returns where the current record is, to keep after the next read.
func (r *csvReader) locate(n int) lines {
	loc := lines{line: r.line}
	if n > 0 && r.fieldLine(n-1) != r.line {
		loc.fields = make([]int, n)
		for i := range loc.fields {
			loc.fields[i] = r.fieldLine(i)
		}
	}
	return loc
}

// badUTF8 returns the index of the first field that is not valid UTF-8, or -1.
func badUTF8(rec []string) int {
	for i, f := range rec {
		if !utf8.ValidString(f) {
			return i
		}
	}
	return -1
}
