package authz

import (
	"strings"

	"registrar/records"
)

// The policy: for each entity, which rows each class of principal sees, as SQL over
// the entity's table (alias t). Placeholders, all bound:
//
//	{O}  the principal's orgs (schools, and their district)       IN-list
//	{C}  the classes the teacher teaches (active enrollments)     subquery, binds the teacher id
//	{CM} the people actively enrolled in those classes            subquery (a join: see below)
//	{CE} the active enrollments of those classes                  subquery (a join)
//	{CS} the students actively enrolled in those classes          subquery over {C}
//	{S}  the explicit students (a parent's minor children, self)  IN-list
//	{SC} the classes of those students (active enrollments)       subquery over {S}
//	{U}  the principal's own user id
//	{T}  today, in the district's time zone
//	{KO} a counselor's caseload orgs (the orgs of their counselor roles)  IN-list
//	{KS} the caseload's students who hold a student role in {KO}   subquery
//	{KU} the people of {KO} a counselor with a caseload sees: {KS}, and everyone with
//	     a role in {KO} other than student, parent, guardian or relative (staff)  subquery
//
// An enrollment is active while its status is active and its endDate (inclusive) has
// not passed; one that has not begun yet counts, so a teacher can prepare a roster.
// {CM} and {CE} are written as a join from the teacher's enrollments to their
// classes' enrollments, not as "class_id IN {C} AND status = 'active'": without
// table statistics SQLite otherwise picks the index on status and reads every
// enrollment of the district (60 times slower on 10,000 students; see
// httpapi/authz_bench_test.go).
// An empty cell means "nothing". Unrestricted principals see every row. A principal
// with several classes (a teacher who is also a parent) sees the union. District
// administrators hold the school class over their district's orgs. A counselor
// without a caseload holds the school class over their schools; with one, the
// caseload class: the school's rules with every row about a student narrowed to the
// caseload's students (and the school's staff), never reaching outside {KO}.
// docs/access-control.md is this table in prose; change both together.
var policy = map[string]map[string]string{
	"org": {
		classSchool:   "t.sourced_id IN {O} OR t.sourced_id IN (SELECT o.parent_id FROM orgs o WHERE o.sourced_id IN {O})",
		classTeacher:  "t.sourced_id IN (SELECT r.org_id FROM user_roles r WHERE r.user_id = {U}) OR t.sourced_id IN (SELECT o.parent_id FROM orgs o JOIN user_roles r ON r.org_id = o.sourced_id WHERE r.user_id = {U})",
		classGuardian: "t.sourced_id IN (SELECT r.org_id FROM user_roles r WHERE r.user_id IN {S})",
		classStudent:  "t.sourced_id IN (SELECT r.org_id FROM user_roles r WHERE r.user_id = {U})",
		classCaseload: "t.sourced_id IN {KO} OR t.sourced_id IN (SELECT o.parent_id FROM orgs o WHERE o.sourced_id IN {KO})",
	},
	"academicSession": {classSchool: "1=1", classTeacher: "1=1", classGuardian: "1=1", classStudent: "1=1", classCaseload: "1=1"},
	"category":        {classSchool: "1=1", classTeacher: "1=1", classGuardian: "1=1", classStudent: "1=1", classCaseload: "1=1"},
	"resource":        {classSchool: "1=1", classTeacher: "1=1", classCaseload: "1=1"},
	"course": {
		classSchool:   "t.org_id IN {O} OR t.org_id IN (SELECT o.parent_id FROM orgs o WHERE o.sourced_id IN {O})",
		classTeacher:  "t.sourced_id IN (SELECT c.course_id FROM classes c WHERE c.sourced_id IN {C})",
		classGuardian: "t.sourced_id IN (SELECT c.course_id FROM classes c WHERE c.sourced_id IN {SC})",
		classStudent:  "t.sourced_id IN (SELECT c.course_id FROM classes c WHERE c.sourced_id IN {SC})",
		classCaseload: "t.org_id IN {KO} OR t.org_id IN (SELECT o.parent_id FROM orgs o WHERE o.sourced_id IN {KO})",
	},
	"class": {
		classSchool:   "t.school_id IN {O}",
		classTeacher:  "t.sourced_id IN {C}",
		classGuardian: "t.sourced_id IN {SC}",
		classStudent:  "t.sourced_id IN {SC}",
		classCaseload: "t.school_id IN {KO}",
	},
	"user": {
		classSchool:   "t.sourced_id IN (SELECT r.user_id FROM user_roles r WHERE r.org_id IN {O})",
		classTeacher:  "t.sourced_id = {U} OR t.sourced_id IN {CM}",
		classGuardian: "t.sourced_id = {U} OR t.sourced_id IN {S} OR t.sourced_id IN (SELECT e.user_id FROM enrollments e WHERE e.class_id IN {SC} AND e.role = 'teacher' AND e.status = 'active' AND (e.end_date IS NULL OR e.end_date >= {T}))",
		classStudent:  "t.sourced_id = {U} OR t.sourced_id IN (SELECT e.user_id FROM enrollments e WHERE e.class_id IN {SC} AND e.role = 'teacher' AND e.status = 'active' AND (e.end_date IS NULL OR e.end_date >= {T}))",
		classCaseload: "t.sourced_id IN {KU}",
	},
	// Demographics: administrators and counselors of the student's school; a parent for
	// a minor child; the student. Teachers do not see demographics: a legitimate
	// educational interest in a class roster does not extend to race or birthplace.
	"demographics": {
		classSchool:   "t.sourced_id IN (SELECT r.user_id FROM user_roles r WHERE r.org_id IN {O})",
		classGuardian: "t.sourced_id IN {S}",
		classStudent:  "t.sourced_id = {U}",
		classCaseload: "t.sourced_id IN {KU}",
	},
	// A teacher sees the active enrollments of the classes they teach: not those of a
	// student who has left the class.
	"enrollment": {
		classSchool:   "t.school_id IN {O}",
		classTeacher:  "t.sourced_id IN {CE}",
		classGuardian: "t.user_id IN {S}",
		classStudent:  "t.user_id = {U}",
		classCaseload: "t.school_id IN {KO} AND t.user_id IN {KU}",
	},
	"lineItem": {
		classSchool:   "t.school_id IN {O}",
		classTeacher:  "t.class_id IN {C}",
		classGuardian: "t.class_id IN {SC}",
		classStudent:  "t.class_id IN {SC}",
		classCaseload: "t.school_id IN {KO}",
	},
	"scoreScale": {
		classSchool:   "t.class_id IN (SELECT c.sourced_id FROM classes c WHERE c.school_id IN {O})",
		classTeacher:  "t.class_id IN {C}",
		classGuardian: "t.class_id IN {SC}",
		classStudent:  "t.class_id IN {SC}",
		classCaseload: "t.class_id IN (SELECT c.sourced_id FROM classes c WHERE c.school_id IN {KO})",
	},
	// A teacher sees the results of their classes' line items for the students who are
	// (still) actively enrolled in that class, and may write only those.
	"result": {
		classSchool: "t.line_item_id IN (SELECT l.sourced_id FROM line_items l WHERE l.school_id IN {O})",
		classTeacher: "t.line_item_id IN (SELECT l.sourced_id FROM line_items l WHERE l.class_id IN {C}) AND EXISTS (SELECT 1 FROM line_items l JOIN enrollments e ON e.class_id = l.class_id" +
			" WHERE l.sourced_id = t.line_item_id AND e.user_id = t.student_id AND e.role = 'student' AND e.status = 'active' AND (e.end_date IS NULL OR e.end_date >= {T}))",
		classGuardian: "t.student_id IN {S}",
		classStudent:  "t.student_id = {U}",
		classCaseload: "t.student_id IN {KS} AND t.line_item_id IN (SELECT l.sourced_id FROM line_items l WHERE l.school_id IN {KO})",
	},
	"assessmentLineItem": {
		classSchool:   "t.class_id IS NULL OR t.class_id IN (SELECT c.sourced_id FROM classes c WHERE c.school_id IN {O})",
		classTeacher:  "t.class_id IN {C}",
		classGuardian: "t.class_id IN {SC}",
		classStudent:  "t.class_id IN {SC}",
		classCaseload: "t.class_id IS NULL OR t.class_id IN (SELECT c.sourced_id FROM classes c WHERE c.school_id IN {KO})",
	},
	"assessmentResult": {
		classSchool:   "t.student_id IN (SELECT r.user_id FROM user_roles r WHERE r.org_id IN {O})",
		classTeacher:  "t.student_id IN {CS}",
		classGuardian: "t.student_id IN {S}",
		classStudent:  "t.student_id = {U}",
		classCaseload: "t.student_id IN {KS}",
	},
}

// readers limits, field by field, which classes of person may read a field; a field
// not listed is readable by everyone who can read its row. Clients read every field
// of the entities their scopes allow. A principal holding several classes may read
// a field when any of them may. Every field listed is Sensitive, so a hidden field is
// neither decrypted nor returned, and filtering, sorting or selecting on it is refused
// as if it did not exist (authz tests check this).
//
// userIds carries identifiers from other systems (state and federal ids): only
// school and district officials need them. Parents and students see staff (the
// teachers of their classes) as well as themselves; a staff member's identifiers and
// phone numbers are not theirs to read, and the field policy cannot tell rows apart.
var readers = map[string]map[string][]string{
	"user": {
		"userIds":    {classSchool, classCaseload},
		"identifier": {classSchool, classCaseload, classTeacher},
		"phone":      {classSchool, classCaseload, classTeacher},
		"sms":        {classSchool, classCaseload, classTeacher},
	},
}

// writable says which classes of person may write each gradebook entity (within
// their row scope). Clients write with the gradebook/assessment write scopes.
var writable = map[string][]string{
	"lineItem":           {classTeacher, classSchool, classCaseload},
	"result":             {classTeacher, classSchool, classCaseload},
	"category":           {classSchool, classCaseload},
	"scoreScale":         {classTeacher, classSchool, classCaseload},
	"assessmentLineItem": {classSchool, classCaseload},
	"assessmentResult":   {classTeacher, classSchool, classCaseload},
}

// Deny is the predicate that matches nothing.
var Deny = records.Predicate{SQL: "1=0"}

// Rows returns the predicate that limits entity e to what the scope may see.
func (s *Scope) Rows(e *records.Entity) records.Predicate {
	if s.deny {
		return Deny
	}
	if s.Unrestricted {
		return records.Predicate{}
	}
	cells := policy[e.Name]
	var parts []string
	var args []any
	for _, class := range []string{classSchool, classCaseload, classTeacher, classGuardian, classStudent} {
		if !s.kinds[class] {
			continue
		}
		tmpl := cells[class]
		if tmpl == "" {
			continue
		}
		sql, a, ok := s.expand(tmpl)
		if !ok {
			continue
		}
		parts = append(parts, "("+sql+")")
		args = append(args, a...)
	}
	if len(parts) == 0 {
		return Deny
	}
	return records.Predicate{SQL: strings.Join(parts, " OR "), Args: args}
}

// expand fills a policy template. It returns ok=false when a set it needs is empty
// (the cell then matches nothing, and is left out).
func (s *Scope) expand(tmpl string) (string, []any, bool) {
	var b strings.Builder
	var args []any
	for {
		i := strings.IndexByte(tmpl, '{')
		if i < 0 {
			b.WriteString(tmpl)
			break
		}
		j := strings.IndexByte(tmpl[i:], '}')
		b.WriteString(tmpl[:i])
		name := tmpl[i+1 : i+j]
		tmpl = tmpl[i+j+1:]
		switch name {
		case "O":
			if len(s.Orgs) == 0 {
				return "", nil, false
			}
			b.WriteString(inList(len(s.Orgs)))
			for _, o := range s.Orgs {
				args = append(args, o)
			}
		case "S":
			// No students (a parent whose children are all eligible) matches nothing,
			// but leaves the rest of the cell (the parent's own record) standing.
			if len(s.Students) == 0 {
				b.WriteString("(NULL)")
				continue
			}
			b.WriteString(inList(len(s.Students)))
			for _, o := range s.Students {
				args = append(args, o)
			}
		case "SC":
			if len(s.Students) == 0 {
				b.WriteString("(NULL)")
				continue
			}
			b.WriteString("(SELECT sc.class_id FROM enrollments sc WHERE sc.user_id IN " + inList(len(s.Students)) + " AND sc.status = 'active' AND (sc.end_date IS NULL OR sc.end_date >= ?))")
			for _, o := range s.Students {
				args = append(args, o)
			}
			args = append(args, s.today)
		case "C", "CS", "CM", "CE":
			if s.Teacher == "" {
				return "", nil, false
			}
			const teaches = "tc.user_id = ? AND tc.role IN ('teacher', 'administrator', 'proctor') AND tc.status = 'active' AND (tc.end_date IS NULL OR tc.end_date >= ?)"
			const active = "e.status = 'active' AND (e.end_date IS NULL OR e.end_date >= ?)"
			switch name {
			case "C":
				b.WriteString("(SELECT tc.class_id FROM enrollments tc WHERE " + teaches + ")")
				args = append(args, s.Teacher, s.today)
			case "CM", "CE", "CS":
				col, role := "e.user_id", ""
				if name == "CE" {
					col = "e.sourced_id"
				}
				if name == "CS" {
					role = " AND e.role = 'student'"
				}
				b.WriteString("(SELECT " + col + " FROM enrollments tc JOIN enrollments e ON e.class_id = tc.class_id WHERE " + teaches + " AND " + active + role + ")")
				args = append(args, s.Teacher, s.today, s.today)
			}
		case "KO", "KS", "KU":
			if len(s.CaseloadOrgs) == 0 || len(s.Caseload) == 0 {
				return "", nil, false
			}
			orgs := inList(len(s.CaseloadOrgs))
			switch name {
			case "KO":
				b.WriteString(orgs)
			case "KS":
				b.WriteString("(SELECT kr.user_id FROM user_roles kr WHERE kr.org_id IN " + orgs + " AND kr.role = 'student' AND kr.user_id IN " + inList(len(s.Caseload)) + ")")
			case "KU":
				b.WriteString("(SELECT kr.user_id FROM user_roles kr WHERE kr.org_id IN " + orgs +
					" AND (kr.role NOT IN ('student', 'parent', 'guardian', 'relative') OR kr.role = 'student' AND kr.user_id IN " + inList(len(s.Caseload)) + "))")
			}
			for _, o := range s.CaseloadOrgs {
				args = append(args, o)
			}
			if name != "KO" {
				for _, k := range s.Caseload {
					args = append(args, k)
				}
			}
		case "T":
			b.WriteString("?")
			args = append(args, s.today)
		case "U":
			if s.P.Kind != "user" {
				return "", nil, false
			}
			b.WriteString("?")
			args = append(args, s.P.ID)
		}
	}
	return b.String(), args, true
}

func inList(n int) string {
	return "(" + strings.TrimSuffix(strings.Repeat("?, ", n), ", ") + ")"
}

// Hidden reports whether the scope may not read field f of entity e (the readers
// table). Clients need the demographics scope for demographics (CanRead); within an
// entity they may read, they read every field.
func (s *Scope) Hidden(e *records.Entity, f *records.Field) bool {
	if s.deny {
		return true
	}
	if s.P.Kind == "client" || s.Unrestricted {
		return false
	}
	classes, limited := readers[e.Name][f.Name]
	if !limited {
		return false
	}
	for _, c := range classes {
		if s.kinds[c] {
			return false
		}
	}
	return true
}

// CanRead reports whether the scope may read entity e at all (the OneRoster scopes
// of a client; people read per the policy table).
func (s *Scope) CanRead(e *records.Entity) bool {
	if s.deny {
		return false
	}
	if s.P.Kind == "client" {
		switch e.Service {
		case "rostering", "resources":
			if e == records.Demographics {
				return s.P.Has(RosterDemographics)
			}
			return s.P.Has(RosterReadonly) || s.P.Has(RosterCoreReadonly)
		case "gradebook":
			if e == records.AssessmentLineItem || e == records.AssessmentResult {
				return s.P.Has(AssessmentReadonly)
			}
			return s.P.Has(GradebookReadonly) || s.P.Has(GradebookCore)
		}
		return false
	}
	if s.Unrestricted {
		return true
	}
	cells := policy[e.Name]
	for class := range s.kinds {
		if cells[class] != "" {
			return true
		}
	}
	return false
}

// Write actions.
const (
	WritePut    = "put"
	WritePost   = "post"
	WriteDelete = "delete"
)

// CanWrite reports whether the scope may write entity e with action (rows are then
// limited by Rows, like reads).
func (s *Scope) CanWrite(e *records.Entity, action string) bool {
	if s.deny {
		return false
	}
	if s.P.Kind == "client" {
		assessment := e == records.AssessmentLineItem || e == records.AssessmentResult
		switch action {
		case WritePut:
			if assessment {
				return s.P.Has(AssessmentCreatePut)
			}
			return s.P.Has(GradebookCreatePut)
		case WritePost:
			return !assessment && s.P.Has(GradebookCreatePost)
		case WriteDelete:
			if assessment {
				return s.P.Has(AssessmentDelete)
			}
			return s.P.Has(GradebookDelete)
		}
		return false
	}
	if s.Unrestricted {
		return true
	}
	for _, class := range writable[e.Name] {
		if s.kinds[class] {
			return true
		}
	}
	return false
}

// Admin reports whether the scope may run registrar's administrative operations
// (imports, exports, the audit trail).
func (s *Scope) Admin() bool {
	if s.deny {
		return false
	}
	if s.P.Kind == "client" {
		return s.P.Has(AdminScope) && (s.Unrestricted || s.root)
	}
	return s.root && s.kinds[classDistrict]
}

// Denied reports whether the principal has no standing at all (disabled user, no roles).
func (s *Scope) Denied() bool { return s.deny }
