package gen

import (
	"errors"
	"fmt"
	"time"
)

// Config describes the district to generate. Zero values of Schools,
// TeachersPerSchool, ClassesPerTeacher, StudentsPerClass, Today and
// DistrictName are filled from Defaults(Students); GuardiansPerStudent,
// LineItemsPerClass and Results are taken as given, so 0/false switch those
// parts off.
type Config struct {
	Seed uint64 // seeds every random choice and every sourcedId

	Schools           int // number of schools; students are split evenly over them
	Students          int // total number of students (at least 1)
	TeachersPerSchool int // teachers in every school

	ClassesPerTeacher int // scheduled classes taught by each teacher
	StudentsPerClass  int // nominal class size; actual sizes vary by up to ±2

	GuardiansPerStudent int // 0, 1 or 2 parent/guardian users per student, linked both ways by agentSourcedIds

	LineItemsPerClass int  // line items (assignments) per class; 0 = no gradebook files
	Results           bool // write a result for every student of a class for each of its line items

	Today        time.Time // reference date: picks the school year and computes ages; never the wall clock
	DistrictName string    // name of the district org; derived from the seed when empty

	// Canary, when non-empty, is embedded (followed by "-" and the row
	// number in the file) in every sensitive free-text value: email, sms,
	// phone, identifier, userMasterIdentifier, userIds identifiers,
	// demographics cityOfBirth, results comment and textScore. Every user
	// then carries all of these fields. It must not contain characters that
	// break the e-mail or {type:id} formats (',', ':', '{', '}', '@', spaces).
	Canary string
}

// DefaultToday is the reference date used by Defaults: late in the
// 2025-2026 school year, so most line items are past due.
var DefaultToday = time.Date(2026, time.May, 15, 0, 0, 0, 0, time.UTC)

// Defaults returns sensible proportions for a district of the given size:
// one school per 500 students, one teacher per 20 students, five classes
// per teacher of about 30 students, two guardians per student, five line
// items per class with results, and DefaultToday as the reference date.
func Defaults(students int) Config {
	if students < 1 {
		students = 1
	}
	schools := (students + 499) / 500
	teachers := (students/schools + 10) / 20
	if teachers < 1 {
		teachers = 1
	}
	return Config{
		Schools:             schools,
		Students:            students,
		TeachersPerSchool:   teachers,
		ClassesPerTeacher:   5,
		StudentsPerClass:    30,
		GuardiansPerStudent: 2,
		LineItemsPerClass:   5,
		Results:             true,
		Today:               DefaultToday,
	}
}

// Upper bounds that keep every index inside the sourcedId encoding.
const (
	maxStudents  = 1 << 30
	maxPerSchool = 1 << 16
	maxRows      = 1 << 39
)

// normalize fills zero fields from Defaults and validates the result.
func (c Config) normalize() (Config, error) {
	if c.Students < 1 {
		return c, errors.New("gen: Students must be at least 1")
	}
	if c.Students > maxStudents {
		return c, fmt.Errorf("gen: at most %d students", maxStudents)
	}
	d := Defaults(c.Students)
	if c.Schools == 0 {
		c.Schools = d.Schools
	}
	if c.TeachersPerSchool == 0 {
		c.TeachersPerSchool = (c.Students/c.Schools + 10) / 20
		if c.TeachersPerSchool < 1 {
			c.TeachersPerSchool = 1
		}
	}
	if c.ClassesPerTeacher == 0 {
		c.ClassesPerTeacher = d.ClassesPerTeacher
	}
	if c.StudentsPerClass == 0 {
		c.StudentsPerClass = d.StudentsPerClass
	}
	if c.Today.IsZero() {
		c.Today = d.Today
	}
	c.Today = time.Date(c.Today.Year(), c.Today.Month(), c.Today.Day(), 0, 0, 0, 0, time.UTC)
	switch {
	case c.Schools < 1 || c.Schools > c.Students:
		return c, fmt.Errorf("gen: Schools = %d, want 1..Students", c.Schools)
	case c.TeachersPerSchool < 1 || c.TeachersPerSchool > maxPerSchool:
		return c, fmt.Errorf("gen: TeachersPerSchool = %d, want 1..%d", c.TeachersPerSchool, maxPerSchool)
	case c.ClassesPerTeacher < 1 || c.ClassesPerTeacher > 16:
		return c, fmt.Errorf("gen: ClassesPerTeacher = %d, want 1..16", c.ClassesPerTeacher)
	case c.StudentsPerClass < 1 || c.StudentsPerClass > 500:
		return c, fmt.Errorf("gen: StudentsPerClass = %d, want 1..500", c.StudentsPerClass)
	case c.GuardiansPerStudent < 0 || c.GuardiansPerStudent > 2:
		return c, fmt.Errorf("gen: GuardiansPerStudent = %d, want 0..2", c.GuardiansPerStudent)
	case c.LineItemsPerClass < 0 || c.LineItemsPerClass > 200:
		return c, fmt.Errorf("gen: LineItemsPerClass = %d, want 0..200", c.LineItemsPerClass)
	}
	classes := int64(c.Schools) * int64(c.TeachersPerSchool) * int64(c.ClassesPerTeacher)
	if classes*int64(c.StudentsPerClass+2)*int64(max(1, c.LineItemsPerClass)) >= maxRows {
		return c, errors.New("gen: configuration too large")
	}
	return c, nil
}
