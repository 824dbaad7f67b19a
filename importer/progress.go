package importer

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Progress is the state of a running import.
type Progress struct {
	Phase   string        `json:"phase"` // checking | writing | done
	File    string        `json:"file,omitempty"`
	Rows    int64         `json:"rows"`            // rows handled in this phase
	Total   int64         `json:"total,omitempty"` // rows to write (writing), 0 while checking
	Bytes   int64         `json:"bytes"`           // bytes read in this phase
	Size    int64         `json:"size,omitempty"`  // bytes to read (checking)
	Rate    float64       `json:"rowsPerSecond"`
	ETA     time.Duration `json:"etaNs,omitempty"`
	Elapsed time.Duration `json:"elapsedNs"`
}

// progress shows an import's progress: a bar redrawn on a terminal, a plain line
// every few seconds otherwise, and callbacks for the API's job status. Its goroutine
// is stopped by stop.
type progress struct {
	w    io.Writer
	term bool
	cb   func(Progress)

	mu        sync.Mutex
	name      string
	file      string
	cnt       *counter
	doneBytes int64 // bytes of the files finished in this phase
	size      int64
	total     int64
	start     time.Time
	lastLen   int
	rows      atomic.Int64
	out       sync.Mutex // one display write at a time

	quit chan struct{}
	wg   sync.WaitGroup
	once sync.Once
}

func newProgress(w io.Writer, term bool, cb func(Progress)) *progress {
	p := &progress{w: w, term: term, cb: cb, quit: make(chan struct{}), start: time.Now()}
	if w == nil && cb == nil {
		return p
	}
	every := 5 * time.Second
	if term {
		every = 200 * time.Millisecond
	} else if w == nil {
		every = time.Second
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		last := time.Now()
		for {
			select {
			case <-p.quit:
				return
			case <-t.C:
				p.show(false)
				if p.cb != nil && time.Since(last) >= time.Second {
					p.cb(p.state())
					last = time.Now()
				}
			}
		}
	}()
	return p
}

// phase starts a phase: checking (by bytes of size) or writing (by rows of total).
func (p *progress) phase(name string, size, total int64) {
	p.mu.Lock()
	changed := p.name != name
	if changed {
		p.name, p.doneBytes, p.cnt, p.start, p.file = name, 0, nil, time.Now(), ""
		p.rows.Store(0)
	}
	if size > 0 {
		p.size = size
	}
	p.total = total
	p.mu.Unlock()
	if changed && p.w != nil && !p.term {
		p.out.Lock()
		switch {
		case total > 0:
			fmt.Fprintf(p.w, "import: %s %s rows in one transaction\n", name, count(total))
		default:
			fmt.Fprintf(p.w, "import: %s the package\n", name)
		}
		p.out.Unlock()
	}
}

func (p *progress) startFile(name string, cnt *counter) {
	p.mu.Lock()
	if p.cnt != nil {
		p.doneBytes += p.cnt.n.Load()
	}
	p.file, p.cnt = name, cnt
	p.mu.Unlock()
}

func (p *progress) row() { p.rows.Add(1) }

func (p *progress) state() Progress {
	p.mu.Lock()
	defer p.mu.Unlock()
	s := Progress{Phase: p.name, File: p.file, Rows: p.rows.Load(), Total: p.total, Size: p.size, Elapsed: time.Since(p.start)}
	s.Bytes = p.doneBytes
	if p.cnt != nil {
		s.Bytes += p.cnt.n.Load()
	}
	if sec := s.Elapsed.Seconds(); sec > 0 {
		s.Rate = float64(s.Rows) / sec
	}
	switch {
	case s.Total > 0 && s.Rate > 0:
		s.ETA = time.Duration(float64(s.Total-s.Rows) / s.Rate * float64(time.Second))
	case s.Size > 0 && s.Bytes > 0:
		s.ETA = time.Duration(float64(s.Size-s.Bytes) / float64(s.Bytes) * float64(s.Elapsed))
	}
	if s.ETA < 0 {
		s.ETA = 0
	}
	return s
}

func (s Progress) fraction() float64 {
	switch {
	case s.Total > 0:
		return min(1, float64(s.Rows)/float64(s.Total))
	case s.Size > 0:
		return min(1, float64(s.Bytes)/float64(s.Size))
	}
	return 0
}

func (p *progress) show(final bool) {
	if p.w == nil {
		return
	}
	p.out.Lock()
	defer p.out.Unlock()
	s := p.state()
	if s.Phase == "" {
		return
	}
	pct := s.fraction()
	eta := "--:--"
	if s.ETA > 0 || final {
		eta = clock(s.ETA)
	}
	rows := fmt.Sprintf("%s rows", count(s.Rows))
	if s.Total > 0 {
		rows = fmt.Sprintf("%s/%s rows", count(s.Rows), count(s.Total))
	}
	if !p.term {
		fmt.Fprintf(p.w, "import: %s %s: %3.0f%%, %s, %s rows/s, ETA %s\n", s.Phase, s.File, pct*100, rows, count(int64(s.Rate)), eta)
		return
	}
	const width = 24
	n := int(pct * width)
	bar := strings.Repeat("=", n)
	if n < width {
		bar += ">" + strings.Repeat(" ", width-n-1)
	}
	line := fmt.Sprintf("%-8s %-30s [%s] %3.0f%% %s  %s rows/s  ETA %s", s.Phase, s.File, bar, pct*100, rows, count(int64(s.Rate)), eta)
	p.mu.Lock()
	pad := ""
	if d := p.lastLen - len(line); d > 0 {
		pad = strings.Repeat(" ", d)
	}
	p.lastLen = len(line)
	p.mu.Unlock()
	fmt.Fprintf(p.w, "\r%s%s", line, pad)
}

// done ends the display with a last state and a message.
func (p *progress) done(msg string) {
	if p.w == nil {
		return
	}
	p.show(true)
	p.out.Lock()
	defer p.out.Unlock()
	if p.term {
		fmt.Fprintln(p.w)
	}
	fmt.Fprintln(p.w, "import: "+msg)
}

func (p *progress) stop() {
	p.once.Do(func() {
		close(p.quit)
		p.wg.Wait()
	})
}

func clock(d time.Duration) string {
	s := int(d.Round(time.Second).Seconds())
	if s >= 3600 {
		return fmt.Sprintf("%d:%02d:%02d", s/3600, s/60%60, s%60)
	}
	return fmt.Sprintf("%d:%02d", s/60, s%60)
}

// count formats n with thousands separators.
func count(n int64) string {
	s := fmt.Sprint(n)
	if n < 0 {
		return s
	}
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}
