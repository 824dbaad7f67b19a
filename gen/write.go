package gen

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"registrar/oneroster/csvspec"
)

// Summary describes a generated package: row counts and sourcedIds of
// entities with known properties, for tests that need a handle on the data.
// Sample fields are empty when the configuration cannot provide them (for
// example SampleGuardian with GuardiansPerStudent 0).
type Summary struct {
	Counts   map[string]int // data rows per file, keyed by csvspec File.Name ("users")
	District string         // sourcedId of the district org
	Schools  []string       // sourcedIds of the school orgs

	SampleTeacher  string // a teacher of SampleClass (the class's primary teacher)
	SampleStudent  string // a student under 18 enrolled in SampleClass
	SampleGuardian string // a parent/guardian of SampleStudent (agents of each other)
	SampleClass    string // a scheduled class of the first school
	SampleLineItem string // a line item of SampleClass
	SampleAdmin    string // the district administrator (role districtAdministrator at District)

	EligibleStudent string // a student aged 18 or more on Config.Today, with guardians
	MinorStudent    string // a student under 18 on Config.Today, with guardians
}

// SystemName and SystemCode are written as source.systemName and
// source.systemCode in the manifest of every generated package.
const (
	SystemName = "registrar synthetic district generator"
	SystemCode = "registrar-gen"
)

// WriteCSV writes a OneRoster 1.2 CSV bulk package (manifest.csv and every
// data file it declares bulk) into dir, creating dir if needed. Files are
// streamed row by row. On error, files already written are left in place.
func WriteCSV(ctx context.Context, dir string, cfg Config) (Summary, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return Summary{}, fmt.Errorf("gen: %w", err)
	}
	ds := &dirSink{dir: dir}
	sum, err := generate(ctx, cfg, ds)
	if ds.f != nil {
		ds.f.Close()
	}
	return sum, err
}

// WriteZip writes the same package as WriteCSV as a zip archive to w.
// Entries carry Config.Today as modification time, so the archive bytes are
// deterministic too.
func WriteZip(ctx context.Context, w io.Writer, cfg Config) (Summary, error) {
	n, err := cfg.normalize()
	if err != nil {
		return Summary{}, err
	}
	zw := zip.NewWriter(w)
	// Fastest deflate level: packages are large and mostly UUIDs; the
	// output is still deterministic.
	zw.RegisterCompressor(zip.Deflate, func(out io.Writer) (io.WriteCloser, error) {
		return flate.NewWriter(out, flate.BestSpeed)
	})
	sum, err := generate(ctx, n, &zipSink{zw: zw, cfg: n})
	if err != nil {
		return sum, err
	}
	if err := zw.Close(); err != nil {
		return sum, fmt.Errorf("gen: zip: %w", err)
	}
	return sum, nil
}

// sink receives the files of a package one at a time.
type sink interface {
	create(name string) (io.Writer, error) // starts a file
	done() error                           // ends the file last created
}

type dirSink struct {
	dir string
	f   *os.File
}

func (d *dirSink) create(name string) (io.Writer, error) {
	f, err := os.Create(filepath.Join(d.dir, name))
	if err != nil {
		return nil, fmt.Errorf("gen: %w", err)
	}
	d.f = f
	return f, nil
}

func (d *dirSink) done() error {
	f := d.f
	d.f = nil
	if err := f.Close(); err != nil {
		return fmt.Errorf("gen: %w", err)
	}
	return nil
}

type zipSink struct {
	zw  *zip.Writer
	cfg Config
}

func (z *zipSink) create(name string) (io.Writer, error) {
	w, err := z.zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: z.cfg.Today})
	if err != nil {
		return nil, fmt.Errorf("gen: zip: %w", err)
	}
	return w, nil
}

func (z *zipSink) done() error { return nil }

// gen holds the per-package state: configuration, salts, the calendar and
// the O(Schools) layout. Nothing in it grows with the number of students.
type gen struct {
	cfg          Config
	salt1, salt2 uint64
	r            *rng
	cal          calendar
	schools      []school
	district     string
	districtCode string
	slug         string
	sum          Summary
	ci           classInfo
	agents       []uint64
}

func newGen(cfg Config) *gen {
	g := &gen{
		cfg:   cfg,
		salt1: mix64(cfg.Seed ^ 0x243f6a8885a308d3),
		salt2: mix64(cfg.Seed ^ 0x13198a2e03707344),
		r:     newRNG(cfg.Seed),
		cal:   newCalendar(cfg.Today),
	}
	g.r.seed(kDistrict, 0)
	if cfg.DistrictName != "" {
		g.district = cfg.DistrictName
		g.slug = slugify(g.district)
	} else {
		place := g.r.pick(placeFirst) + g.r.pick(placeSecond)
		g.district = place + " Unified School District"
		g.slug = asciiLower(place) + "-usd"
	}
	g.districtCode = "99" + pad(int(g.salt1%90000)+10000, 5)
	g.layoutSchools()
	return g
}

// slugify turns a name into a DNS label: lower-case letters and digits
// separated by single hyphens, at most 40 characters.
func slugify(name string) string {
	var b []byte
	dash := false
	for i := 0; i < len(name) && len(b) < 40; i++ {
		c := name[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c >= 'A' && c <= 'Z':
			c += 'a' - 'A'
		default:
			dash = len(b) > 0
			continue
		}
		if dash {
			b = append(b, '-')
			dash = false
		}
		b = append(b, c)
	}
	if len(b) == 0 {
		return "district"
	}
	return string(b)
}

// files returns the data files this configuration writes, in csvspec order.
func (g *gen) files() []csvspec.File {
	on := map[string]bool{"orgs": true, "academicSessions": true, "courses": true, "classes": true,
		"users": true, "roles": true, "enrollments": true, "demographics": true}
	if g.cfg.LineItemsPerClass > 0 {
		for _, n := range []string{"categories", "scoreScales", "lineItems", "lineItemLearningObjectiveIds", "lineItemScoreScales"} {
			on[n] = true
		}
		on["results"] = g.cfg.Results
	}
	var fs []csvspec.File
	for _, f := range csvspec.Files {
		if on[f.Name] {
			fs = append(fs, f)
		}
	}
	return fs
}

// generate writes a whole package to s.
func generate(ctx context.Context, cfg Config, s sink) (Summary, error) {
	cfg, err := cfg.normalize()
	if err != nil {
		return Summary{}, err
	}
	if err := ctx.Err(); err != nil {
		return Summary{}, err
	}
	g := newGen(cfg)
	g.samples()
	files := g.files()

	m := csvspec.Manifest{Modes: map[string]string{}, SourceSystemName: SystemName, SourceSystemCode: SystemCode}
	for _, f := range files {
		m.Modes[f.Name] = csvspec.ModeBulk
	}
	var mb bytes.Buffer
	if err := csvspec.WriteManifest(&mb, m); err != nil {
		return Summary{}, err
	}
	w, err := s.create(csvspec.ManifestFileName)
	if err != nil {
		return Summary{}, err
	}
	if _, err := w.Write(mb.Bytes()); err != nil {
		return Summary{}, fmt.Errorf("gen: write manifest: %w", err)
	}
	if err := s.done(); err != nil {
		return Summary{}, err
	}

	writers := map[string]func(*rowWriter){
		"orgs": g.writeOrgs, "academicSessions": g.writeSessions, "courses": g.writeCourses,
		"classes": g.writeClasses, "users": g.writeUsers, "roles": g.writeRoles,
		"enrollments": g.writeEnrollments, "demographics": g.writeDemographics,
		"categories": g.writeCategories, "scoreScales": g.writeScoreScales,
		"lineItems": g.writeLineItems, "lineItemLearningObjectiveIds": g.writeLineItemLOs,
		"lineItemScoreScales": g.writeLineItemScales, "results": g.writeResults,
	}
	g.sum.Counts = make(map[string]int, len(files))
	for _, f := range files {
		w, err := s.create(f.FileName)
		if err != nil {
			return Summary{}, err
		}
		rw := newRowWriter(ctx, w, f)
		writers[f.Name](rw)
		if err := rw.flush(); err != nil {
			return Summary{}, err
		}
		if err := s.done(); err != nil {
			return Summary{}, err
		}
		if rw.rows == 0 {
			return Summary{}, fmt.Errorf("gen: internal error: %s has no rows", f.FileName)
		}
		g.sum.Counts[f.Name] = rw.rows
	}
	return g.sum, nil
}

// samples fills the sample sourcedIds that follow from the layout.
func (g *gen) samples() {
	s := &g.sum
	s.District = g.id(kOrg, 0)
	for i := range g.schools {
		s.Schools = append(s.Schools, g.id(kOrg, uint64(i+1)))
	}
	s.SampleAdmin = g.id(kAdmin, 0)
	sc := &g.schools[0]
	ci := &g.ci
	g.layoutClass(sc, 0, ci)
	s.SampleClass = g.id(kClass, ci.global)
	s.SampleTeacher = g.id(kTeacher, g.teacherIndex(sc, ci.teacher))
	if g.cfg.LineItemsPerClass > 0 {
		s.SampleLineItem = g.id(kLineItem, ci.global*uint64(g.cfg.LineItemsPerClass))
	}
	for r := range ci.size {
		i := ci.member(sc, r)
		if st := g.student(i); age(st.birth, g.cfg.Today) < 18 {
			s.SampleStudent = g.id(kStudent, uint64(i))
			if g.cfg.GuardiansPerStudent > 0 {
				s.SampleGuardian = g.id(kGuardian, guardianIndex(i, 0))
			}
			break
		}
	}
}

func (g *gen) teacherIndex(s *school, t int) uint64 {
	return uint64(s.idx)*uint64(g.cfg.TeachersPerSchool) + uint64(t)
}

func guardianIndex(student, k int) uint64 { return uint64(student)*2 + uint64(k) }

// tag returns the canary marker for the current row, or "".
func (g *gen) tag(rw *rowWriter) string {
	if g.cfg.Canary == "" {
		return ""
	}
	return g.cfg.Canary + "-" + strconv.Itoa(rw.row())
}

// tagged appends the canary marker to v (or returns it alone when v is empty).
func tagged(v, tag string) string {
	switch {
	case tag == "":
		return v
	case v == "":
		return tag
	}
	return v + " " + tag
}

func (g *gen) classesPerSchool() int { return g.cfg.TeachersPerSchool * g.cfg.ClassesPerTeacher }

// ---- rostering files ----

func (g *gen) writeOrgs(rw *rowWriter) {
	rw.id(g, kOrg, 0)
	rw.empty(2)
	rw.str(g.district)
	rw.str("district")
	rw.str(g.districtCode)
	rw.empty(1)
	rw.endRow()
	for i := range g.schools {
		s := &g.schools[i]
		rw.id(g, kOrg, uint64(i+1))
		rw.empty(2)
		rw.str(s.name)
		rw.str("school")
		rw.str(s.identifier)
		rw.id(g, kOrg, 0)
		rw.endRow()
	}
}

func (g *gen) writeSessions(rw *rowWriter) {
	for k, s := range g.cal.sessions {
		rw.id(g, kSession, uint64(k))
		rw.empty(2)
		rw.str(s.title)
		rw.str(s.typ)
		rw.date(s.start)
		rw.date(s.end)
		if s.parent >= 0 {
			rw.id(g, kSession, uint64(s.parent))
		} else {
			rw.empty(1)
		}
		rw.integer(g.cal.schoolYear)
		rw.endRow()
	}
}

func (g *gen) writeCourses(rw *rowWriter) {
	for i := range g.schools {
		s := &g.schools[i]
		for _, grade := range s.band {
			for subj := range subjects {
				rw.id(g, kCourse, courseIndex(i, grade, subj))
				rw.empty(2)
				rw.id(g, kSession, sessYear)
				rw.str(courseTitle(subj, grade))
				rw.str(courseCode(subj, grade))
				rw.str(gradeCode(grade))
				rw.id(g, kOrg, uint64(i+1))
				rw.str(subjects[subj].name)
				rw.str(subjectCode(subj, grade))
				rw.endRow()
			}
		}
		if rw.err != nil {
			return
		}
	}
}

func (g *gen) writeClasses(rw *rowWriter) {
	ci := &g.ci
	for i := range g.schools {
		s := &g.schools[i]
		for c := range g.classesPerSchool() {
			g.layoutClass(s, c, ci)
			rw.id(g, kClass, ci.global)
			rw.empty(2)
			rw.str(courseTitle(ci.subj, ci.grade) + " - Period " + strconv.Itoa(ci.period))
			for _, gr := range ci.grades {
				rw.listItem(gradeCode(gr))
			}
			rw.listField()
			rw.id(g, kCourse, courseIndex(i, ci.grade, ci.subj))
			rw.str(courseCode(ci.subj, ci.grade) + "-" + pad(c+1, 3))
			rw.str("scheduled")
			rw.str("Room " + strconv.Itoa(100+ci.teacher+1))
			rw.id(g, kOrg, uint64(i+1))
			rw.listID(g, kSession, sessFall)
			rw.listID(g, kSession, sessSpring)
			rw.listField()
			rw.str(subjects[ci.subj].name)
			rw.str(subjectCode(ci.subj, ci.grade))
			rw.str(strconv.Itoa(ci.period))
			rw.endRow()
			if rw.err != nil {
				return
			}
		}
	}
}

// user is one users.csv row before the canary is applied.
type user struct {
	k          kind
	idx        uint64
	username   string
	sisID      string
	p          person
	identifier string
	email      string // local part; domain separate
	domain     string
	sms, phone string
	grades     string
	master     string
	org        uint64 // primary org index (0 = district)
	agentKind  kind   // kind of the ids in g.agents
}

func (g *gen) writeUser(rw *rowWriter, u *user) {
	tag := g.tag(rw)
	rw.id(g, u.k, u.idx)
	rw.empty(2)
	rw.str("true")
	rw.str(u.username)
	sis, ldap := u.sisID, u.username
	if tag != "" {
		sis, ldap = sis+"-"+tag, ldap+"-"+tag
	}
	rw.listItem("{SIS:" + sis + "}")
	rw.listItem("{LDAP:" + ldap + "}")
	rw.listField()
	rw.str(u.p.given)
	rw.str(u.p.family)
	rw.str(u.p.middle)
	rw.str(tagged(u.identifier, tag))
	if tag != "" {
		rw.str(u.email + "." + tag + "@" + u.domain)
	} else {
		rw.str(u.email + "@" + u.domain)
	}
	rw.str(tagged(u.sms, tag))
	rw.str(tagged(u.phone, tag))
	for _, a := range g.agents {
		rw.listID(g, u.agentKind, a)
	}
	rw.listField()
	rw.str(u.grades)
	rw.empty(1) // password: never generated
	rw.str(tagged(u.master, tag))
	rw.str(u.p.preferred)
	rw.empty(1) // preferredMiddleName
	rw.empty(1) // preferredFamilyName
	rw.id(g, kOrg, u.org)
	rw.str(u.p.pronouns)
	rw.endRow()
}

// employeeID scrambles a staff number below 900000 into a six-digit
// identifier; distinct numbers give distinct identifiers.
func employeeID(n uint64) string { return "E" + strconv.FormatUint(n*7919%900000+100000, 10) }

// stateID scrambles a student index into a unique ten-digit state identifier.
func (g *gen) stateID(i int) string {
	return strconv.FormatUint(1_000_000_000+(uint64(i)*982451653+g.salt1%1_000_000_000)%1_000_000_000, 10)
}

func (g *gen) staffUser(k kind, idx uint64, org uint64, role string) user {
	r := g.r
	r.seed(k, idx)
	p := drawPerson(r, "")
	u := user{k: k, idx: idx, p: p, org: org, domain: g.slug + ".test", phone: g.phone(r)}
	base := asciiLower(p.given) + "." + asciiLower(p.family)
	switch k {
	case kTeacher:
		u.username = asciiLower(p.given[:1]) + asciiLower(p.family) + strconv.FormatUint(idx+1, 10)
		u.sisID = "T" + strconv.FormatUint(idx+1, 10)
		u.identifier = employeeID(idx + 1)
	case kAdmin:
		u.username = base + ".da" + strconv.FormatUint(idx+1, 10)
		u.sisID = "A" + strconv.FormatUint(idx+1, 10)
		u.identifier = employeeID(899_999 - idx)
	default:
		u.username = base + "." + role + strconv.FormatUint(idx+1, 10)
		u.sisID = "X" + strconv.FormatUint(idx+1, 10)
		u.identifier = employeeID(500_000 + idx)
	}
	u.email = u.username
	u.master = u.identifier
	if g.cfg.Canary != "" {
		u.sms = u.phone
	}
	return u
}

func (g *gen) writeUsers(rw *rowWriter) {
	g.agents = g.agents[:0]
	u := g.staffUser(kAdmin, 0, 0, "")
	g.writeUser(rw, &u)
	for i := range g.schools {
		s := &g.schools[i]
		for role := range 2 {
			u := g.staffUser(kStaff, uint64(i*2+role), uint64(i+1), [2]string{"pr", "co"}[role])
			g.writeUser(rw, &u)
		}
		for t := range g.cfg.TeachersPerSchool {
			u := g.staffUser(kTeacher, g.teacherIndex(s, t), uint64(i+1), "")
			g.writeUser(rw, &u)
		}
	}
	nG := g.cfg.GuardiansPerStudent
	for i := range g.cfg.Students {
		st := g.student(i)
		n := strconv.Itoa(i + 1)
		u := user{k: kStudent, idx: uint64(i), p: st.person, org: uint64(st.school.idx + 1),
			domain: "students." + g.slug + ".test", phone: st.phone, grades: gradeCode(st.grade),
			agentKind: kGuardian}
		u.username = asciiLower(st.given) + "." + asciiLower(st.family) + n
		u.email = u.username
		u.sisID = "S" + strconv.FormatUint(uint64(i)*7919%9_000_000+1_000_000, 10)
		u.identifier = g.stateID(i)
		u.master = u.identifier
		if g.cfg.Canary != "" {
			u.sms = u.phone
		}
		g.agents = g.agents[:0]
		for k := range nG {
			g.agents = append(g.agents, guardianIndex(i, k))
		}
		g.writeUser(rw, &u)
		if nG > 0 {
			a := age(st.birth, g.cfg.Today)
			if a >= 18 && g.sum.EligibleStudent == "" {
				g.sum.EligibleStudent = g.id(kStudent, uint64(i))
			}
			if a < 18 && g.sum.MinorStudent == "" {
				g.sum.MinorStudent = g.id(kStudent, uint64(i))
			}
		}
		g.agents = append(g.agents[:0], uint64(i))
		for k := range nG {
			gi := guardianIndex(i, k)
			family := ""
			if st.guardianKeepsName[k] {
				family = st.family
			}
			g.r.seed(kGuardian, gi)
			p := drawPerson(g.r, family)
			gu := user{k: kGuardian, idx: gi, p: p, org: uint64(st.school.idx + 1),
				domain: "example.net", phone: g.phone(g.r), agentKind: kStudent}
			gu.username = asciiLower(p.given) + "." + asciiLower(p.family) + "." + n + string(rune('a'+k))
			gu.email = gu.username
			gu.sisID = "G" + strconv.FormatUint(gi+1, 10)
			if g.r.chance(0.6) || g.cfg.Canary != "" {
				gu.sms = gu.phone
			}
			g.writeUser(rw, &gu)
		}
		if rw.err != nil {
			return
		}
	}
}

func (g *gen) writeRole(rw *rowWriter, k kind, idx uint64, roleType, role string, org uint64, dated bool) {
	rw.id(g, kRole, uint64(rw.row()))
	rw.empty(2)
	rw.id(g, k, idx)
	rw.str(roleType)
	rw.str(role)
	if dated {
		rw.date(g.cal.sessions[sessYear].start)
		rw.date(g.cal.sessions[sessYear].end)
	} else {
		rw.empty(2)
	}
	rw.id(g, kOrg, org)
	rw.empty(1) // userProfileSourcedId
	rw.endRow()
}

func (g *gen) writeRoles(rw *rowWriter) {
	g.writeRole(rw, kAdmin, 0, "primary", "districtAdministrator", 0, false)
	nS := len(g.schools)
	for i := range g.schools {
		s := &g.schools[i]
		org := uint64(i + 1)
		g.writeRole(rw, kStaff, uint64(i*2), "primary", "principal", org, false)
		g.writeRole(rw, kStaff, uint64(i*2), "secondary", "siteAdministrator", org, false)
		g.writeRole(rw, kStaff, uint64(i*2+1), "primary", "counselor", org, false)
		for t := range g.cfg.TeachersPerSchool {
			ti := g.teacherIndex(s, t)
			g.writeRole(rw, kTeacher, ti, "primary", "teacher", org, false)
			if t == 0 && nS > 1 { // one teacher per school also teaches at the next school
				g.writeRole(rw, kTeacher, ti, "secondary", "teacher", uint64((i+1)%nS+1), false)
			}
		}
	}
	for i := range g.cfg.Students {
		s := g.schoolOf(i)
		org := uint64(s.idx + 1)
		g.writeRole(rw, kStudent, uint64(i), "primary", "student", org, true)
		if g.cfg.GuardiansPerStudent > 0 {
			st := g.student(i)
			for k := range g.cfg.GuardiansPerStudent {
				role := "parent"
				if st.guardianIsGuardian[k] {
					role = "guardian"
				}
				g.writeRole(rw, kGuardian, guardianIndex(i, k), "primary", role, org, false)
			}
		}
		if rw.err != nil {
			return
		}
	}
}

func (g *gen) writeEnrollments(rw *rowWriter) {
	ci := &g.ci
	year := g.cal.sessions[sessYear]
	for i := range g.schools {
		s := &g.schools[i]
		for c := range g.classesPerSchool() {
			g.layoutClass(s, c, ci)
			rw.id(g, kEnrollment, uint64(rw.row()))
			rw.empty(2)
			rw.id(g, kClass, ci.global)
			rw.id(g, kOrg, uint64(i+1))
			rw.id(g, kTeacher, g.teacherIndex(s, ci.teacher))
			rw.str("teacher")
			rw.str("true")
			rw.date(year.start)
			rw.date(year.end)
			rw.endRow()
			for r := range ci.size {
				rw.id(g, kEnrollment, uint64(rw.row()))
				rw.empty(2)
				rw.id(g, kClass, ci.global)
				rw.id(g, kOrg, uint64(i+1))
				rw.id(g, kStudent, uint64(ci.member(s, r)))
				rw.str("student")
				rw.empty(1) // primary applies to teachers
				rw.date(year.start)
				rw.date(year.end)
				rw.endRow()
			}
			if rw.err != nil {
				return
			}
		}
	}
}

func (g *gen) writeDemographics(rw *rowWriter) {
	for i := range g.cfg.Students {
		st := g.student(i)
		tag := g.tag(rw)
		rw.id(g, kStudent, uint64(i))
		rw.empty(2)
		rw.date(st.birth)
		rw.str(st.sex)
		n := 0
		for _, b := range st.races {
			rw.bool(b)
			if b {
				n++
			}
		}
		rw.bool(n > 1)
		rw.bool(st.hispanic)
		rw.str(st.country)
		rw.str(st.state)
		rw.str(tagged(st.city, tag))
		rw.str(st.residence)
		rw.endRow()
		if rw.err != nil {
			return
		}
	}
}

// ---- gradebook files ----

var categoryTitles = [3]string{"Homework", "Quizzes", "Tests"}
var categoryWeights = [3]float64{0.3, 0.3, 0.4}
var categoryItem = [3]string{"Homework", "Quiz", "Test"}
var categoryMax = [3]float64{10, 20, 100}

const letterScale = "{90-100:A},{80-89:B},{70-79:C},{60-69:D},{0-59:F}"

func (g *gen) writeCategories(rw *rowWriter) {
	for k := range categoryTitles {
		rw.id(g, kCategory, uint64(k))
		rw.empty(2)
		rw.str(categoryTitles[k])
		rw.decimal(categoryWeights[k], 2)
		rw.endRow()
	}
}

func (g *gen) forEachClass(rw *rowWriter, fn func(s *school, ci *classInfo)) {
	ci := &g.ci
	for i := range g.schools {
		s := &g.schools[i]
		for c := range g.classesPerSchool() {
			g.layoutClass(s, c, ci)
			fn(s, ci)
			if rw.err != nil {
				return
			}
		}
	}
}

func (g *gen) writeScoreScales(rw *rowWriter) {
	g.forEachClass(rw, func(s *school, ci *classInfo) {
		rw.id(g, kScoreScale, ci.global)
		rw.empty(2)
		rw.str("Letter Grades A-F")
		rw.str("letter")
		rw.id(g, kOrg, uint64(s.idx+1))
		rw.id(g, kCourse, courseIndex(s.idx, ci.grade, ci.subj))
		rw.id(g, kClass, ci.global)
		rw.str(letterScale)
		rw.endRow()
	})
}

// lineItem is the plan of one line item; results recompute it.
type lineItem struct {
	global      uint64
	cat         int
	number      int
	gp          int // index into calendar.sessions
	assign, due time.Time
	max         float64
}

func (g *gen) planLineItem(ci *classInfo, k int) lineItem {
	L := g.cfg.LineItemsPerClass
	li := lineItem{global: ci.global*uint64(L) + uint64(k), cat: k % 3, number: k/3 + 1, gp: sessQ1 + k*4/L}
	li.max = categoryMax[li.cat]
	r := g.r
	r.seed(kLineItem, li.global)
	gp := g.cal.sessions[li.gp]
	span := int(gp.end.Sub(gp.start).Hours()/24) + 1
	off := r.intn(max(1, span-9))
	li.assign = gp.start.AddDate(0, 0, off)
	li.due = li.assign.AddDate(0, 0, 1+r.intn(8))
	if li.due.After(gp.end) {
		li.due = gp.end
	}
	return li
}

func (g *gen) writeLineItems(rw *rowWriter) {
	g.forEachClass(rw, func(s *school, ci *classInfo) {
		for k := range g.cfg.LineItemsPerClass {
			li := g.planLineItem(ci, k)
			rw.id(g, kLineItem, li.global)
			rw.empty(2)
			rw.str(categoryItem[li.cat] + " " + strconv.Itoa(li.number))
			rw.str(subjects[ci.subj].name + " " + strings.ToLower(categoryItem[li.cat]) + " " + strconv.Itoa(li.number) + " for " + courseTitle(ci.subj, ci.grade))
			rw.date(li.assign)
			rw.date(li.due)
			rw.id(g, kClass, ci.global)
			rw.id(g, kCategory, uint64(li.cat))
			rw.id(g, kSession, uint64(li.gp))
			rw.decimal(0, 0)
			rw.decimal(li.max, 0)
			rw.id(g, kOrg, uint64(s.idx+1))
			rw.endRow()
		}
	})
}

func (g *gen) writeLineItemLOs(rw *rowWriter) {
	g.forEachClass(rw, func(s *school, ci *classInfo) {
		for k := range g.cfg.LineItemsPerClass {
			gl := ci.global*uint64(g.cfg.LineItemsPerClass) + uint64(k)
			rw.id(g, kLineItemLO, gl)
			rw.empty(2)
			rw.id(g, kLineItem, gl)
			rw.str("case")
			rw.id(g, kCaseLO, uint64(ci.subj)<<16|uint64(ci.grade)<<8|uint64(k))
			rw.endRow()
		}
	})
}

func (g *gen) writeLineItemScales(rw *rowWriter) {
	g.forEachClass(rw, func(s *school, ci *classInfo) {
		for k := range g.cfg.LineItemsPerClass {
			gl := ci.global*uint64(g.cfg.LineItemsPerClass) + uint64(k)
			rw.id(g, kLineItemScale, gl)
			rw.empty(2)
			rw.empty(1) // title
			rw.id(g, kLineItem, gl)
			rw.id(g, kScoreScale, ci.global)
			rw.endRow()
		}
	})
}

func letter(pct float64) string {
	switch {
	case pct >= 0.9:
		return "A"
	case pct >= 0.8:
		return "B"
	case pct >= 0.7:
		return "C"
	case pct >= 0.6:
		return "D"
	}
	return "F"
}

func (g *gen) writeResults(rw *rowWriter) {
	var classID, liID, memberIDs []byte
	var dates [7][]byte
	g.forEachClass(rw, func(s *school, ci *classInfo) {
		// Ids repeat on every row of a class: format them once.
		classID = g.appendID(classID[:0], kClass, ci.global)
		memberIDs = memberIDs[:0]
		for m := range ci.size {
			memberIDs = g.appendID(memberIDs, kStudent, uint64(ci.member(s, m)))
		}
		for k := range g.cfg.LineItemsPerClass {
			li := g.planLineItem(ci, k)
			liID = g.appendID(liID[:0], kLineItem, li.global)
			for d := range dates {
				dates[d] = li.due.AddDate(0, 0, d).AppendFormat(dates[d][:0], time.DateOnly)
			}
			r := g.r
			r.seed(kResult, li.global)
			step := 0.5
			if li.max >= 100 {
				step = 1
			}
			for m := range ci.size {
				tag := g.tag(rw)
				x := r.r.Float64()
				status := "fully graded"
				switch {
				case x < 0.82:
				case x < 0.87:
					status = "partially graded"
				case x < 0.91:
					status = "submitted"
				case x < 0.96:
					status = "not submitted"
				default:
					status = "exempt"
				}
				scored := status == "fully graded" || status == "partially graded"
				var pct float64
				if scored {
					pct = min(max(0.82+0.12*r.r.NormFloat64(), 0.2), 1)
					if status == "partially graded" {
						pct *= 0.6
					} else if r.chance(0.04) { // extra credit beyond resultValueMax
						pct = 1 + float64(1+r.intn(10))/100
					}
				}
				late := scored && r.chance(0.07)
				scoreDate := dates[r.intn(7)]
				comment := ""
				if r.chance(0.1) || tag != "" {
					comment = r.pick(commentPhrases)
				}
				rw.id(g, kResult, uint64(rw.row()))
				rw.empty(2)
				rw.raw(liID)
				rw.raw(memberIDs[m*36 : m*36+36])
				rw.str(status)
				if scored {
					rw.decimal(float64(int(pct*li.max/step+0.5))*step, 1)
				} else {
					rw.empty(1)
				}
				rw.raw(scoreDate)
				rw.str(tagged(comment, tag))
				if scored {
					rw.str(tagged(letter(pct), tag))
				} else {
					rw.str(tag)
				}
				rw.raw(classID)
				rw.bool(status == "submitted")
				rw.bool(status == "partially graded")
				rw.bool(late)
				rw.bool(status == "not submitted")
				rw.endRow()
			}
		}
	})
}
