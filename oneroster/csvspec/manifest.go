package csvspec

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Manifest property names and the versions this package writes.
const (
	PropManifestVersion  = "manifest.version"  // version of the manifest format
	PropOneRosterVersion = "oneroster.version" // OneRoster version of the package
	PropSystemName       = "source.systemName" // name of the producing system
	PropSystemCode       = "source.systemCode" // code of the producing system
	ManifestVersion      = "1.0"               // manifest.version written by WriteManifest
	OneRosterVersion     = "1.2"               // oneroster.version written by WriteManifest
)

// ManifestHeader is the header row of manifest.csv.
var ManifestHeader = []string{"propertyName", "value"}

// Manifest is the content of manifest.csv.
type Manifest struct {
	Version          string            // oneroster.version; WriteManifest writes "1.2" when empty
	ManifestVersion  string            // manifest.version; WriteManifest writes "1.0" when empty
	Modes            map[string]string // File.Name ("users") -> bulk|delta|absent; missing files are absent
	SourceSystemName string            // source.systemName (optional)
	SourceSystemCode string            // source.systemCode (optional)
}

// Mode returns the declared mode of the named file (entity or file name),
// ModeAbsent when it is not declared.
func (m Manifest) Mode(name string) string {
	f, ok := Lookup(name)
	if !ok {
		return ModeAbsent
	}
	if v, ok := m.Modes[f.Name]; ok && v != "" {
		return v
	}
	return ModeAbsent
}

func validMode(v string) bool { return v == ModeBulk || v == ModeDelta || v == ModeAbsent }

// ReadManifest parses manifest.csv. It requires the propertyName,value
// header and oneroster.version, rejects unknown file.* properties, duplicate
// properties and modes other than bulk, delta and absent, and ignores other
// unknown properties. Every file of Files gets an entry in Modes (absent when
// not declared). A UTF-8 byte order mark is tolerated.
func ReadManifest(r io.Reader) (Manifest, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = 2
	hdr, err := cr.Read()
	if err != nil {
		return Manifest{}, fmt.Errorf("csvspec: manifest header: %w", err)
	}
	hdr[0] = strings.TrimPrefix(hdr[0], "\uFEFF")
	if hdr[0] != ManifestHeader[0] || hdr[1] != ManifestHeader[1] {
		return Manifest{}, fmt.Errorf("csvspec: manifest header is %q, want %q", hdr, ManifestHeader)
	}
	m := Manifest{Modes: make(map[string]string, len(Files))}
	seen := make(map[string]bool)
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return Manifest{}, fmt.Errorf("csvspec: manifest: %w", err)
		}
		prop, val := rec[0], rec[1]
		if seen[prop] {
			return Manifest{}, fmt.Errorf("csvspec: manifest property %q appears twice", prop)
		}
		seen[prop] = true
		switch {
		case prop == PropManifestVersion:
			m.ManifestVersion = val
		case prop == PropOneRosterVersion:
			m.Version = val
		case prop == PropSystemName:
			m.SourceSystemName = val
		case prop == PropSystemCode:
			m.SourceSystemCode = val
		case strings.HasPrefix(prop, "file."):
			f, ok := Lookup(strings.TrimPrefix(prop, "file."))
			if !ok || f.ManifestKey != prop {
				return Manifest{}, fmt.Errorf("csvspec: manifest names unknown file property %q", prop)
			}
			if !validMode(val) {
				return Manifest{}, fmt.Errorf("csvspec: manifest %s = %q, want bulk, delta or absent", prop, val)
			}
			m.Modes[f.Name] = val
		}
	}
	if m.Version == "" {
		return Manifest{}, errors.New("csvspec: manifest lacks oneroster.version")
	}
	for _, f := range Files {
		if _, ok := m.Modes[f.Name]; !ok {
			m.Modes[f.Name] = ModeAbsent
		}
	}
	return m, nil
}

// WriteManifest writes manifest.csv: the header, manifest.version,
// oneroster.version, one file.* row for every file of the binding (in the
// binding's manifest order; files missing from Modes are absent) and the
// source.* rows. Lines end in CRLF as RFC 4180 specifies.
func WriteManifest(w io.Writer, m Manifest) error {
	for name, mode := range m.Modes {
		if f, ok := Lookup(name); !ok || f.Name != name {
			return fmt.Errorf("csvspec: manifest mode for unknown file %q (keys are entity names such as \"users\")", name)
		}
		if !validMode(mode) {
			return fmt.Errorf("csvspec: manifest mode %q for %s, want bulk, delta or absent", mode, name)
		}
	}
	cw := csv.NewWriter(w)
	cw.UseCRLF = true
	version, mversion := m.Version, m.ManifestVersion
	if version == "" {
		version = OneRosterVersion
	}
	if mversion == "" {
		mversion = ManifestVersion
	}
	rows := [][]string{ManifestHeader, {PropManifestVersion, mversion}, {PropOneRosterVersion, version}}
	for _, name := range manifestOrder {
		f := MustLookup(name)
		rows = append(rows, []string{f.ManifestKey, m.Mode(name)})
	}
	rows = append(rows, []string{PropSystemName, m.SourceSystemName}, []string{PropSystemCode, m.SourceSystemCode})
	if err := cw.WriteAll(rows); err != nil {
		return fmt.Errorf("csvspec: write manifest: %w", err)
	}
	return nil
}
