// Package testdistrict gives tests the districts they work on. Load writes a small
// hand-designed synthetic district into a store, with relationships chosen to exercise
// every authorization rule: two schools, teachers with and without shared classes, a
// minor and an eligible student with guardians, a student in another school, a second
// district. Generated imports a large generated one, for benchmarks. Every value is
// fake. Tests only.
package testdistrict

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"registrar/records"
	"registrar/sqlstore"
)

// IDs of the district's people and things.
const (
	District   = "org-district"
	SchoolA    = "org-school-a"
	SchoolB    = "org-school-b"
	District2  = "org-district-2"
	SchoolC    = "org-school-c" // in District2
	SchoolYear = "as-2026"
	Term1      = "as-2026-t1"
	Term2      = "as-2026-t2"
	GP1        = "as-2026-t1-gp1"
	CourseMath = "course-math"
	CourseSci  = "course-sci"
	CourseC    = "course-c"

	ClassMathA = "class-math-a" // school A, taught by TeacherA; students Minor, Eligible, Student3
	ClassSciA  = "class-sci-a"  // school A, taught by TeacherA2; students Minor
	ClassB     = "class-b"      // school B, taught by TeacherB; student StudentB
	ClassC     = "class-c"      // school C (other district), taught by TeacherC; student StudentC

	TeacherA   = "user-teacher-a"
	TeacherA2  = "user-teacher-a2"
	TeacherB   = "user-teacher-b"
	TeacherC   = "user-teacher-c"
	PrincipalA = "user-principal-a"
	Counselor  = "user-counselor-a"
	Admin      = "user-admin"
	Minor      = "user-student-minor"    // 14 years old, school A
	Eligible   = "user-student-eligible" // 18 on the reference date, school A
	Student3   = "user-student-3"        // school A
	StudentB   = "user-student-b"
	StudentC   = "user-student-c"
	Guardian   = "user-guardian"  // parent of Minor
	Guardian2  = "user-guardian2" // parent of Eligible
	Disabled   = "user-disabled-teacher"

	Category   = "cat-homework"
	ScaleA     = "scale-a"
	LineItemA  = "li-math-a-1"
	LineItemB  = "li-b-1"
	ResultMinA = "result-minor-a"
	ResultEliA = "result-eligible-a"
	ResultB    = "result-b"
)

// Today is the reference date: Eligible turns 18 on it.
var Today = time.Date(2026, 9, 15, 12, 0, 0, 0, time.UTC)

// EligibleBirth is Eligible's birth date: 18 years before Today.
const EligibleBirth = "2008-09-15"

// Canary is embedded in every sensitive value, so tests can scan for leaks.
const Canary = "CANARY7f3a"

func ref(id string) string { return id }

// Objects returns the district in load order.
func Objects() []struct {
	E *records.Entity
	O records.Object
} {
	type eo = struct {
		E *records.Entity
		O records.Object
	}
	var out []eo
	add := func(e *records.Entity, o records.Object) {
		o["status"] = records.StatusActive
		out = append(out, eo{e, o})
	}
	org := func(id, name, typ, parent string) {
		o := records.Object{"sourcedId": id, "name": name, "type": typ, "identifier": "ID-" + id}
		if parent != "" {
			o["parent"] = ref(parent)
		}
		add(records.Org, o)
	}
	org(District, "Lakeview Unified (synthetic)", "district", "")
	org(SchoolA, "Alder Middle School", "school", District)
	org(SchoolB, "Birch High School", "school", District)
	org(District2, "Other District (synthetic)", "district", "")
	org(SchoolC, "Cedar School", "school", District2)
	session := func(id, title, typ, start, end, parent string) {
		o := records.Object{"sourcedId": id, "title": title, "type": typ, "startDate": start, "endDate": end, "schoolYear": "2027"}
		if parent != "" {
			o["parent"] = parent
		}
		add(records.AcademicSession, o)
	}
	session(SchoolYear, "2026-2027", "schoolYear", "2026-08-20", "2027-06-10", "")
	session(Term1, "Fall 2026", "term", "2026-08-20", "2027-01-15", SchoolYear)
	session(Term2, "Spring 2027", "term", "2027-01-16", "2027-06-10", SchoolYear)
	session(GP1, "Fall Q1", "gradingPeriod", "2026-08-20", "2026-10-31", Term1)
	course := func(id, title, org string) {
		add(records.Course, records.Object{"sourcedId": id, "title": title, "courseCode": "C-" + id, "org": org, "schoolYear": SchoolYear, "grades": []string{"08", "09"}, "subjects": []string{"math"}})
	}
	course(CourseMath, "Algebra I", SchoolA)
	course(CourseSci, "Physical Science", SchoolA)
	course(CourseC, "Cedar Course", SchoolC)
	class := func(id, title, course, school string) {
		add(records.Class, records.Object{"sourcedId": id, "title": title, "classCode": "K-" + id, "classType": "scheduled", "course": course, "school": school,
			"terms": []string{Term1}, "periods": []string{"1"}, "grades": []string{"08"}, "subjects": []string{"math"}, "location": "Room 101"})
	}
	class(ClassMathA, "Algebra I - Period 1", CourseMath, SchoolA)
	class(ClassSciA, "Physical Science - Period 2", CourseSci, SchoolA)
	class(ClassB, "Biology - Period 3", CourseMath, SchoolB)
	class(ClassC, "Cedar class", CourseC, SchoolC)
	n := 0
	user := func(id, given, family, role, org string, grades []string, agents []string, enabled bool) {
		n++
		o := records.Object{"sourcedId": id, "givenName": given, "familyName": family, "enabledUser": fmt.Sprint(enabled),
			"username": id, "email": fmt.Sprintf("%s.%s@example.org", id, Canary), "identifier": fmt.Sprintf("SID-%d-%s", n, Canary),
			"phone": "555-0100-" + Canary, "userIds": json.RawMessage(fmt.Sprintf(`[{"type":"state","identifier":"ST%d%s"}]`, n, Canary)),
			"roles": []records.Role{{RoleType: "primary", Role: role, Org: org}}, "primaryOrg": org}
		if grades != nil {
			o["grades"] = grades
		}
		if agents != nil {
			o["agents"] = agents
		}
		add(records.User, o)
	}
	user(Admin, "Avery", "Admin", "districtAdministrator", District, nil, nil, true)
	user(PrincipalA, "Parker", "Principal", "principal", SchoolA, nil, nil, true)
	user(Counselor, "Casey", "Counselor", "counselor", SchoolA, nil, nil, true)
	user(TeacherA, "Taylor", "Teacher", "teacher", SchoolA, nil, nil, true)
	user(TeacherA2, "Jordan", "Second", "teacher", SchoolA, nil, nil, true)
	user(TeacherB, "Morgan", "Birch", "teacher", SchoolB, nil, nil, true)
	user(TeacherC, "Riley", "Cedar", "teacher", SchoolC, nil, nil, true)
	user(Disabled, "Drew", "Disabled", "teacher", SchoolA, nil, nil, false)
	user(Minor, "Mia", "Minor", "student", SchoolA, []string{"08"}, nil, true)
	user(Eligible, "Eli", "Eligible", "student", SchoolA, []string{"12"}, nil, true)
	user(Student3, "Sam", "Third", "student", SchoolA, []string{"08"}, nil, true)
	user(StudentB, "Blair", "Birch", "student", SchoolB, []string{"10"}, nil, true)
	user(StudentC, "Cameron", "Cedar", "student", SchoolC, []string{"10"}, nil, true)
	user(Guardian, "Gale", "Minor", "parent", SchoolA, nil, []string{Minor}, true)
	user(Guardian2, "Glen", "Eligible", "guardian", SchoolA, nil, []string{Eligible}, true)
	demo := func(id, birth string) {
		add(records.Demographics, records.Object{"sourcedId": id, "birthDate": birth, "sex": "female", "hispanicOrLatinoEthnicity": "false",
			"white": "true", "cityOfBirth": "Springfield " + Canary, "countryOfBirthCode": "US"})
	}
	demo(Minor, "2012-03-01")
	demo(Eligible, EligibleBirth)
	demo(Student3, "2012-05-05")
	demo(StudentB, "2010-01-01")
	demo(StudentC, "2010-02-02")
	enr := func(id, user, class, school, role string) {
		add(records.Enrollment, records.Object{"sourcedId": id, "user": user, "class": class, "school": school, "role": role, "primary": "true", "beginDate": "2026-08-20"})
	}
	enr("enr-ta-math", TeacherA, ClassMathA, SchoolA, "teacher")
	enr("enr-ta2-sci", TeacherA2, ClassSciA, SchoolA, "teacher")
	enr("enr-tb-b", TeacherB, ClassB, SchoolB, "teacher")
	enr("enr-tc-c", TeacherC, ClassC, SchoolC, "teacher")
	enr("enr-minor-math", Minor, ClassMathA, SchoolA, "student")
	enr("enr-eli-math", Eligible, ClassMathA, SchoolA, "student")
	enr("enr-s3-math", Student3, ClassMathA, SchoolA, "student")
	enr("enr-minor-sci", Minor, ClassSciA, SchoolA, "student")
	enr("enr-sb-b", StudentB, ClassB, SchoolB, "student")
	enr("enr-sc-c", StudentC, ClassC, SchoolC, "student")
	add(records.Category, records.Object{"sourcedId": Category, "title": "Homework", "weight": 0.3})
	add(records.ScoreScale, records.Object{"sourcedId": ScaleA, "title": "Letter grades", "type": "letter", "class": ClassMathA,
		"scoreScaleValue": json.RawMessage(`[{"itemValueLHS":"A","itemValueRHS":"90"},{"itemValueLHS":"B","itemValueRHS":"80"}]`)})
	li := func(id, class, school string) {
		add(records.LineItem, records.Object{"sourcedId": id, "title": "Homework 1 " + id, "assignDate": "2026-09-01T08:00:00Z", "dueDate": "2026-09-08T08:00:00Z",
			"class": class, "school": school, "category": Category, "gradingPeriod": GP1, "resultValueMin": 0.0, "resultValueMax": 100.0})
	}
	li(LineItemA, ClassMathA, SchoolA)
	li(LineItemB, ClassB, SchoolB)
	res := func(id, lineItem, student string, score float64) {
		add(records.Result, records.Object{"sourcedId": id, "lineItem": lineItem, "student": student, "scoreStatus": "fully graded",
			"score": score, "scoreDate": "2026-09-09", "comment": "Good work " + Canary})
	}
	res(ResultMinA, LineItemA, Minor, 93)
	res(ResultEliA, LineItemA, Eligible, 104) // extra credit: above resultValueMax
	res(ResultB, LineItemB, StudentB, 71)
	return out
}

// Load writes the district into the store in one transaction.
func Load(ctx context.Context, s *sqlstore.Store) error {
	return s.Write(ctx, func(ctx context.Context, tx *sqlstore.Tx) error {
		for _, eo := range Objects() {
			if errs := records.Validate(eo.E, eo.O); len(errs) > 0 {
				return records.InvalidFields(eo.E.Name+" "+eo.O.ID(), errs)
			}
			if _, err := tx.Put(ctx, eo.E, eo.O, sqlstore.PutOptions{}); err != nil {
				return fmt.Errorf("%s %s: %w", eo.E.Name, eo.O.ID(), err)
			}
		}
		return nil
	})
}
