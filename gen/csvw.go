package gen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"registrar/oneroster/csvspec"
)

// rowWriter writes RFC 4180 rows (CRLF, minimal quoting) for one csvspec
// file without allocating per field. Errors are sticky: after the first
// failure every call is a no-op and err reports it.
type rowWriter struct {
	ctx    context.Context
	w      *bufio.Writer
	file   csvspec.File
	ncols  int
	buf    []byte // current row
	list   []byte // scratch for list fields
	fields int    // fields written in the current row
	rows   int    // data rows completed
	err    error
}

func newRowWriter(ctx context.Context, w io.Writer, f csvspec.File) *rowWriter {
	rw := &rowWriter{ctx: ctx, w: bufio.NewWriterSize(w, 64<<10), file: f, ncols: len(f.Columns),
		buf: make([]byte, 0, 1024), list: make([]byte, 0, 256)}
	for _, name := range f.Header() {
		rw.str(name)
	}
	rw.endRow()
	rw.rows = 0
	return rw
}

// row returns the 1-based number of the data row being written.
func (rw *rowWriter) row() int { return rw.rows + 1 }

func (rw *rowWriter) sep() {
	if rw.fields > 0 {
		rw.buf = append(rw.buf, ',')
	}
	rw.fields++
}

func needsQuote[T string | []byte](s T) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ',', '"', '\r', '\n':
			return true
		}
	}
	return len(s) > 0 && (s[0] == ' ' || s[len(s)-1] == ' ')
}

func appendField[T string | []byte](dst []byte, s T) []byte {
	if !needsQuote(s) {
		return append(dst, s...)
	}
	dst = append(dst, '"')
	for i := 0; i < len(s); i++ {
		if s[i] == '"' {
			dst = append(dst, '"')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '"')
}

// str writes one text field, quoting it when needed.
func (rw *rowWriter) str(s string) {
	rw.sep()
	rw.buf = appendField(rw.buf, s)
}

// raw writes a field that needs no quoting (sourcedIds, dates, tokens).
func (rw *rowWriter) raw(b []byte) {
	rw.sep()
	rw.buf = append(rw.buf, b...)
}

// listField writes the list built in rw.list as one field.
func (rw *rowWriter) listField() {
	rw.sep()
	rw.buf = appendField(rw.buf, rw.list)
	rw.list = rw.list[:0]
}

// listItem appends one item (which must not contain a comma) to rw.list.
func (rw *rowWriter) listItem(s string) {
	if len(rw.list) > 0 {
		rw.list = append(rw.list, ',')
	}
	rw.list = append(rw.list, s...)
}

// listID appends one sourcedId to rw.list.
func (rw *rowWriter) listID(g *gen, k kind, idx uint64) {
	if len(rw.list) > 0 {
		rw.list = append(rw.list, ',')
	}
	rw.list = g.appendID(rw.list, k, idx)
}

// empty writes n empty fields.
func (rw *rowWriter) empty(n int) {
	for range n {
		rw.sep()
	}
}

func (rw *rowWriter) integer(n int) {
	rw.sep()
	rw.buf = strconv.AppendInt(rw.buf, int64(n), 10)
}

// decimal writes f rounded to the given number of decimals, without
// trailing zeros.
func (rw *rowWriter) decimal(f float64, decimals int) {
	rw.sep()
	rw.buf = strconv.AppendFloat(rw.buf, f, 'f', decimals, 64)
	if decimals > 0 { // trim trailing zeros: 7.50 -> 7.5, 7.00 -> 7
		i := len(rw.buf)
		for rw.buf[i-1] == '0' {
			i--
		}
		if rw.buf[i-1] == '.' {
			i--
		}
		rw.buf = rw.buf[:i]
	}
}

func (rw *rowWriter) bool(b bool) {
	if b {
		rw.str("true")
	} else {
		rw.str("false")
	}
}

func (rw *rowWriter) date(t time.Time) {
	rw.sep()
	rw.buf = t.AppendFormat(rw.buf, time.DateOnly)
}

// id writes one sourcedId field.
func (rw *rowWriter) id(g *gen, k kind, idx uint64) {
	rw.sep()
	rw.buf = g.appendID(rw.buf, k, idx)
}

// endRow terminates the current row, checks its width against the header
// and hands it to the buffered writer.
func (rw *rowWriter) endRow() {
	if rw.err != nil {
		rw.buf, rw.fields = rw.buf[:0], 0
		return
	}
	if rw.fields != rw.ncols {
		rw.err = fmt.Errorf("gen: internal error: %s row %d has %d fields, header has %d", rw.file.FileName, rw.rows+1, rw.fields, rw.ncols)
		return
	}
	rw.buf = append(rw.buf, '\r', '\n')
	if _, err := rw.w.Write(rw.buf); err != nil {
		rw.err = fmt.Errorf("gen: write %s: %w", rw.file.FileName, err)
	}
	rw.buf, rw.fields = rw.buf[:0], 0
	rw.rows++
	if rw.rows&1023 == 0 && rw.err == nil {
		if err := rw.ctx.Err(); err != nil {
			rw.err = err
		}
	}
}

// flush writes out buffered rows and returns the sticky error.
func (rw *rowWriter) flush() error {
	if rw.err != nil {
		return rw.err
	}
	if err := rw.w.Flush(); err != nil {
		rw.err = fmt.Errorf("gen: write %s: %w", rw.file.FileName, err)
	}
	return rw.err
}
