package gen

import (
	"strconv"
	"strings"
	"time"
)

// school is the arithmetic layout of one school: its students are the
// global indices [first, first+n), sorted by grade.
type school struct {
	idx        int
	first, n   int
	band       []int // grade numbers served, 0 = kindergarten .. 12
	kind       string
	name       string
	identifier string
}

// grade returns the grade of the school's local student j.
func (s *school) grade(j int) int { return s.band[j*len(s.band)/s.n] }

// session is one academic session of the district calendar.
type session struct {
	title, typ string
	start, end time.Time
	parent     int // index into calendar.sessions, -1 for none
}

// Indices of calendar.sessions.
const (
	sessYear = iota
	sessFall
	sessSpring
	sessQ1      // Q1..Q4 follow
	numSessions = sessQ1 + 4
)

type calendar struct {
	fall       int // calendar year in which the school year starts
	schoolYear int // OneRoster schoolYear: the year in which it ends
	sessions   [numSessions]session
}

func day(y int, m time.Month, d int) time.Time { return time.Date(y, m, d, 0, 0, 0, 0, time.UTC) }

// newCalendar lays out the school year containing today (a year starts in
// August): two semesters, each split into two grading periods.
func newCalendar(today time.Time) calendar {
	fall := today.Year()
	if today.Month() < time.August {
		fall--
	}
	c := calendar{fall: fall, schoolYear: fall + 1}
	y, n := strconv.Itoa(fall), strconv.Itoa(fall+1)
	c.sessions[sessYear] = session{y + "-" + n + " School Year", "schoolYear", day(fall, time.August, 25), day(fall+1, time.June, 12), -1}
	c.sessions[sessFall] = session{"Fall " + y, "semester", day(fall, time.August, 25), day(fall+1, time.January, 16), sessYear}
	c.sessions[sessSpring] = session{"Spring " + n, "semester", day(fall+1, time.January, 20), day(fall+1, time.June, 12), sessYear}
	c.sessions[sessQ1] = session{"Quarter 1 " + y + "-" + n, "gradingPeriod", day(fall, time.August, 25), day(fall, time.October, 31), sessFall}
	c.sessions[sessQ1+1] = session{"Quarter 2 " + y + "-" + n, "gradingPeriod", day(fall, time.November, 3), day(fall+1, time.January, 16), sessFall}
	c.sessions[sessQ1+2] = session{"Quarter 3 " + y + "-" + n, "gradingPeriod", day(fall+1, time.January, 20), day(fall+1, time.March, 27), sessSpring}
	c.sessions[sessQ1+3] = session{"Quarter 4 " + y + "-" + n, "gradingPeriod", day(fall+1, time.March, 30), day(fall+1, time.June, 12), sessSpring}
	return c
}

// gradeCode renders a grade number as a CEDS grade level code.
func gradeCode(g int) string {
	if g == 0 {
		return "KG"
	}
	if g < 10 {
		return "0" + strconv.Itoa(g)
	}
	return strconv.Itoa(g)
}

// subject is one of the subjects every school offers.
type subject struct {
	name, short, area string
	high              [4]string // high-school course titles, grades 9..12
}

var subjects = []subject{
	{"English Language Arts", "ELA", "01", [4]string{"English 9", "English 10", "American Literature", "British Literature"}},
	{"Mathematics", "MATH", "02", [4]string{"Algebra I", "Geometry", "Algebra II", "Precalculus"}},
	{"Science", "SCI", "03", [4]string{"Biology", "Chemistry", "Physics", "Environmental Science"}},
	{"Social Studies", "SOC", "04", [4]string{"World Geography", "World History", "U.S. History", "Government and Economics"}},
	{"Visual Arts", "ART", "05", [4]string{"Art I", "Art II", "Art III", "Art IV"}},
	{"Physical Education", "PE", "08", [4]string{"Physical Education 9", "Health and Fitness", "Lifetime Sports", "Physical Education 12"}},
}

func courseTitle(subj, grade int) string {
	if grade >= 9 {
		return subjects[subj].high[grade-9]
	}
	if grade == 0 {
		return "Kindergarten " + subjects[subj].name
	}
	return "Grade " + strconv.Itoa(grade) + " " + subjects[subj].name
}

func courseCode(subj, grade int) string { return subjects[subj].short + "-" + gradeCode(grade) }

// subjectCode is a SCED-shaped (area + course number) code; the numbers are synthetic.
func subjectCode(subj, grade int) string {
	return subjects[subj].area + "1" + gradeCode(grade)
}

// courseIndex numbers the course of (school, grade, subject).
func courseIndex(s, grade, subj int) uint64 { return uint64(s)<<7 | uint64(grade)<<3 | uint64(subj) }

// classInfo is the arithmetic layout of one class.
type classInfo struct {
	global  uint64 // index over the district
	local   int    // index within the school
	teacher int    // teacher index within the school
	subj    int
	grade   int // grade of the course
	period  int
	start   int // first member (local student index)
	size    int
	grades  []int // distinct grades of the members, ascending
}

// member returns the global student index of the class's r-th member.
func (c *classInfo) member(s *school, r int) int { return s.first + (c.start+r)%s.n }

// layoutClass computes class c of school s into ci (reusing ci.grades).
func (g *gen) layoutClass(s *school, c int, ci *classInfo) {
	cfg := &g.cfg
	k := cfg.StudentsPerClass
	ci.local = c
	ci.global = uint64(s.idx)*uint64(cfg.TeachersPerSchool*cfg.ClassesPerTeacher) + uint64(c)
	ci.teacher = c / cfg.ClassesPerTeacher
	ci.subj = (ci.teacher + s.idx) % len(subjects)
	ci.period = c%cfg.ClassesPerTeacher%8 + 1
	ci.start = int(uint64(c) * uint64(k) % uint64(s.n))
	jitter := int(mix64(g.salt2^ci.global)%5) - 2
	ci.size = min(max(k+jitter, 1), s.n)
	ci.grade = s.grade((ci.start + ci.size/2) % s.n)
	ci.grades = ci.grades[:0]
	for r := range ci.size {
		gr := s.grade((ci.start + r) % s.n)
		found := false
		for _, x := range ci.grades {
			if x == gr {
				found = true
				break
			}
		}
		if !found {
			ci.grades = append(ci.grades, gr)
		}
	}
	for i := 1; i < len(ci.grades); i++ { // insertion sort, at most 13 items
		for j := i; j > 0 && ci.grades[j] < ci.grades[j-1]; j-- {
			ci.grades[j], ci.grades[j-1] = ci.grades[j-1], ci.grades[j]
		}
	}
}

// layoutSchools splits the students over the schools and assigns grade bands.
func (g *gen) layoutSchools() {
	cfg := &g.cfg
	r := g.r
	g.schools = make([]school, cfg.Schools)
	used := map[string]bool{}
	for s := range g.schools {
		sc := &g.schools[s]
		sc.idx = s
		sc.first = int(int64(s) * int64(cfg.Students) / int64(cfg.Schools))
		sc.n = int(int64(s+1)*int64(cfg.Students)/int64(cfg.Schools)) - sc.first
		switch {
		case cfg.Schools == 1:
			sc.band, sc.kind = gradeRange(0, 12), "Academy"
		case cfg.Schools == 2 && s == 0:
			sc.band, sc.kind = gradeRange(0, 8), "K-8 School"
		case cfg.Schools == 2:
			sc.band, sc.kind = gradeRange(9, 12), "High School"
		case s%3 == 0:
			sc.band, sc.kind = gradeRange(0, 5), "Elementary School"
		case s%3 == 1:
			sc.band, sc.kind = gradeRange(6, 8), "Middle School"
		default:
			sc.band, sc.kind = gradeRange(9, 12), "High School"
		}
		r.seed(kOrg, uint64(s+1))
		var base string
		for try := 0; ; try++ {
			if r.chance(0.5) {
				base = r.pick(schoolHonorifics)
			} else {
				base = r.pick(placeFirst) + r.pick(placeSecond)
			}
			if !used[base+sc.kind] || try > 20 {
				break
			}
		}
		if used[base+sc.kind] {
			base += " " + strconv.Itoa(s+1)
		}
		used[base+sc.kind] = true
		sc.name = base + " " + sc.kind
		sc.identifier = "99" + pad(int(g.salt1%90000)+10000, 5) + pad(s+1, 5)
	}
}

func gradeRange(lo, hi int) []int {
	b := make([]int, 0, hi-lo+1)
	for x := lo; x <= hi; x++ {
		b = append(b, x)
	}
	return b
}

// pad renders n with at least width digits.
func pad(n, width int) string {
	s := strconv.Itoa(n)
	if len(s) < width {
		s = strings.Repeat("0", width-len(s)) + s
	}
	return s
}

// schoolOf returns the school of global student i.
func (g *gen) schoolOf(i int) *school {
	lo, hi := 0, len(g.schools)-1
	for lo < hi {
		m := (lo + hi + 1) / 2
		if g.schools[m].first <= i {
			lo = m
		} else {
			hi = m - 1
		}
	}
	return &g.schools[lo]
}

// person holds the name fields shared by all user kinds.
type person struct {
	given, middle, family string
	preferred, pronouns   string
	sex                   string
}

func drawPerson(r *rng, family string) person {
	var p person
	x := r.r.Float64()
	var names []string
	switch {
	case x < 0.49:
		p.sex, names = "female", femaleNames
	case x < 0.98:
		p.sex, names = "male", maleNames
	case x < 0.99:
		p.sex, names = "unspecified", neutralNames
	default:
		p.sex, names = "other", neutralNames
	}
	p.given = r.pick(names)
	if r.chance(0.4) {
		p.middle = r.pick(names)
	}
	p.family = family
	if p.family == "" {
		p.family = r.pick(familyNames)
	}
	if r.chance(0.04) {
		p.preferred = r.pick(neutralNames)
	}
	if r.chance(0.25) {
		switch p.sex {
		case "female":
			p.pronouns = pronounsFemale
		case "male":
			p.pronouns = pronounsMale
		default:
			p.pronouns = pronounsNeutral
		}
	}
	return p
}

// student is everything drawn for one student; it is recomputed on demand
// from (seed, index) instead of being stored.
type student struct {
	person
	i, local int
	school   *school
	grade    int
	birth    time.Time
	phone    string
	// demographics
	races              [5]bool // AIAN, Asian, Black, NHPI, White
	hispanic           bool
	country, state     string
	city, residence    string
	guardianIsGuardian [2]bool // role "guardian" instead of "parent"
	guardianKeepsName  [2]bool
}

func (g *gen) student(i int) student {
	r := g.r
	r.seed(kStudent, uint64(i))
	st := student{i: i, school: g.schoolOf(i)}
	st.local = i - st.school.first
	st.grade = st.school.grade(st.local)
	st.person = drawPerson(r, "")
	// Kindergarteners turn 5 by September 1 of the fall year.
	latest := day(g.cal.fall-5-st.grade, time.September, 1)
	st.birth = latest.AddDate(0, 0, -r.intn(365))
	firstOfGrade12 := st.grade == 12 && (st.local == 0 || st.school.grade(st.local-1) != 12)
	if r.chance(0.04) || firstOfGrade12 { // retained a year; guarantees an adult student per high school
		st.birth = st.birth.AddDate(-1, 0, 0)
	}
	if st.grade >= 9 && r.chance(0.5) {
		st.phone = g.phone(r)
	}
	st.races = [5]bool{r.chance(0.02), r.chance(0.07), r.chance(0.15), r.chance(0.01), r.chance(0.55)}
	if st.races == [5]bool{} {
		st.races[4] = true
	}
	st.hispanic = r.chance(0.27)
	st.country = "US"
	if r.chance(0.08) {
		st.country = r.pick(foreignCountries)
	} else {
		st.state = r.pick(states)
		st.city = r.pick(placeFirst) + r.pick(placeSecond)
	}
	x := r.r.Float64()
	switch {
	case x < 0.85:
		st.residence = residenceStatuses[0]
	case x < 0.93:
		st.residence = residenceStatuses[1]
	case x < 0.97:
		st.residence = residenceStatuses[2]
	case x < 0.99:
		st.residence = residenceStatuses[3]
	default:
		st.residence = residenceStatuses[4]
	}
	for k := range 2 {
		st.guardianIsGuardian[k] = r.chance(0.1)
		st.guardianKeepsName[k] = r.chance(0.8)
	}
	return st
}

// age returns the age in whole years on date at.
func age(birth, at time.Time) int {
	a := at.Year() - birth.Year()
	if at.Month() < birth.Month() || at.Month() == birth.Month() && at.Day() < birth.Day() {
		a--
	}
	return a
}

// phone returns a number in the fictional 555-0100..0199 range.
func (g *gen) phone(r *rng) string {
	return "+1 " + r.pick(areaCodes) + "-555-01" + pad(r.intn(100), 2)
}

// asciiLower keeps the ASCII letters of s, lower-cased, for usernames.
func asciiLower(s string) string {
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+'a'-'A')
		}
	}
	return string(b)
}
