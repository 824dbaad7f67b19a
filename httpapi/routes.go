package httpapi

import (
	"registrar/records"
)

// Base paths of the OneRoster 1.2 services.
const (
	RosteringBase = "/ims/oneroster/rostering/v1p2"
	GradebookBase = "/ims/oneroster/gradebook/v1p2"
)

// orKind is what a OneRoster route does.
type orKind int

const (
	orList orKind = iota
	orGet
	orPut
	orDelete
	orPost // POST of a set (server allocates sourcedIds)
)

// parent is a path parameter naming an object that must exist in the caller's scope,
// or the route answers 404 as if it did not exist.
type parent struct {
	param  string
	entity *records.Entity
	// where, if set, must also hold (e.g. the class belongs to the school in the path);
	// its arguments are the named path parameters.
	where  string
	params []string
}

// rel is a predicate over the listed entity built from path parameters.
type rel struct {
	sql    string
	params []string
}

// orRoute is one OneRoster operation, as data.
type orRoute struct {
	op      string // operationId in the OpenAPI document
	kind    orKind
	base    string
	path    string // as in the OpenAPI document
	entity  *records.Entity
	fixed   string // a predicate every row of this collection satisfies (students are users with a student role)
	parents []parent
	rel     *rel
	// post: the entity fields forced from path parameters (class of a POSTed line item).
	force map[string]string
}

const (
	isStudent       = "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student')"
	isTeacher       = "EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role IN ('teacher', 'aide'))"
	isSchool        = "t.type = 'school'"
	isTerm          = "t.type = 'term'"
	isGradingPeriod = "t.type = 'gradingPeriod'"
	studentsOfClass = "t.sourced_id IN (SELECT e.user_id FROM enrollments e WHERE e.class_id = ? AND e.role = 'student' AND e.status = 'active')"
	teachersOfClass = "t.sourced_id IN (SELECT e.user_id FROM enrollments e WHERE e.class_id = ? AND e.role = 'teacher' AND e.status = 'active')"
	classesOfUser   = "t.sourced_id IN (SELECT e.class_id FROM enrollments e WHERE e.user_id = ? AND e.status = 'active')"
	classInSchool   = "t.school_id = ?"
)

var (
	pSchool    = parent{param: "schoolSourcedId", entity: records.Org, where: isSchool}
	pClass     = parent{param: "classSourcedId", entity: records.Class}
	pClassInSc = parent{param: "classSourcedId", entity: records.Class, where: classInSchool, params: []string{"schoolSourcedId"}}
)

// oneRosterRoutes is every operation of the two OneRoster 1.2 OpenAPI documents.
// A test checks this table against the documents in both directions.
var oneRosterRoutes = []orRoute{
	// Rostering.
	{op: "getAllAcademicSessions", kind: orList, base: RosteringBase, path: "/academicSessions", entity: records.AcademicSession},
	{op: "getAcademicSession", kind: orGet, base: RosteringBase, path: "/academicSessions/{sourcedId}", entity: records.AcademicSession},
	{op: "getAllClasses", kind: orList, base: RosteringBase, path: "/classes", entity: records.Class},
	{op: "getClass", kind: orGet, base: RosteringBase, path: "/classes/{sourcedId}", entity: records.Class},
	{op: "getStudentsForClass", kind: orList, base: RosteringBase, path: "/classes/{classSourcedId}/students", entity: records.User, fixed: isStudent,
		parents: []parent{pClass}, rel: &rel{studentsOfClass, []string{"classSourcedId"}}},
	{op: "getTeachersForClass", kind: orList, base: RosteringBase, path: "/classes/{classSourcedId}/teachers", entity: records.User,
		parents: []parent{pClass}, rel: &rel{teachersOfClass, []string{"classSourcedId"}}},
	{op: "getAllCourses", kind: orList, base: RosteringBase, path: "/courses", entity: records.Course},
	{op: "getCourse", kind: orGet, base: RosteringBase, path: "/courses/{sourcedId}", entity: records.Course},
	{op: "getClassesForCourse", kind: orList, base: RosteringBase, path: "/courses/{courseSourcedId}/classes", entity: records.Class,
		parents: []parent{{param: "courseSourcedId", entity: records.Course}}, rel: &rel{"t.course_id = ?", []string{"courseSourcedId"}}},
	{op: "getAllDemographics", kind: orList, base: RosteringBase, path: "/demographics", entity: records.Demographics},
	{op: "getDemographics", kind: orGet, base: RosteringBase, path: "/demographics/{sourcedId}", entity: records.Demographics},
	{op: "getAllEnrollments", kind: orList, base: RosteringBase, path: "/enrollments", entity: records.Enrollment},
	{op: "getEnrollment", kind: orGet, base: RosteringBase, path: "/enrollments/{sourcedId}", entity: records.Enrollment},
	{op: "getAllGradingPeriods", kind: orList, base: RosteringBase, path: "/gradingPeriods", entity: records.AcademicSession, fixed: isGradingPeriod},
	{op: "getGradingPeriod", kind: orGet, base: RosteringBase, path: "/gradingPeriods/{sourcedId}", entity: records.AcademicSession, fixed: isGradingPeriod},
	{op: "getAllOrgs", kind: orList, base: RosteringBase, path: "/orgs", entity: records.Org},
	{op: "getOrg", kind: orGet, base: RosteringBase, path: "/orgs/{sourcedId}", entity: records.Org},
	{op: "getAllSchools", kind: orList, base: RosteringBase, path: "/schools", entity: records.Org, fixed: isSchool},
	{op: "getSchool", kind: orGet, base: RosteringBase, path: "/schools/{sourcedId}", entity: records.Org, fixed: isSchool},
	{op: "getClassesForSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/classes", entity: records.Class,
		parents: []parent{pSchool}, rel: &rel{"t.school_id = ?", []string{"schoolSourcedId"}}},
	{op: "getEnrollmentsForClassInSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/classes/{classSourcedId}/enrollments", entity: records.Enrollment,
		parents: []parent{pSchool, pClassInSc}, rel: &rel{"t.class_id = ?", []string{"classSourcedId"}}},
	{op: "getStudentsForClassInSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/classes/{classSourcedId}/students", entity: records.User, fixed: isStudent,
		parents: []parent{pSchool, pClassInSc}, rel: &rel{studentsOfClass, []string{"classSourcedId"}}},
	{op: "getTeachersForClassInSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/classes/{classSourcedId}/teachers", entity: records.User,
		parents: []parent{pSchool, pClassInSc}, rel: &rel{teachersOfClass, []string{"classSourcedId"}}},
	{op: "getCoursesForSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/courses", entity: records.Course,
		parents: []parent{pSchool}, rel: &rel{"t.org_id = ?", []string{"schoolSourcedId"}}},
	{op: "getEnrollmentsForSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/enrollments", entity: records.Enrollment,
		parents: []parent{pSchool}, rel: &rel{"t.school_id = ?", []string{"schoolSourcedId"}}},
	{op: "getStudentsForSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/students", entity: records.User,
		parents: []parent{pSchool}, rel: &rel{"EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role = 'student' AND r.org_id = ?)", []string{"schoolSourcedId"}}},
	{op: "getTeachersForSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/teachers", entity: records.User,
		parents: []parent{pSchool}, rel: &rel{"EXISTS (SELECT 1 FROM user_roles r WHERE r.user_id = t.sourced_id AND r.role IN ('teacher', 'aide') AND r.org_id = ?)", []string{"schoolSourcedId"}}},
	{op: "getTermsForSchool", kind: orList, base: RosteringBase, path: "/schools/{schoolSourcedId}/terms", entity: records.AcademicSession, fixed: isTerm,
		parents: []parent{pSchool}, rel: &rel{"t.sourced_id IN (SELECT ct.ref_id FROM class_terms ct JOIN classes c ON c.sourced_id = ct.owner_id WHERE c.school_id = ?)", []string{"schoolSourcedId"}}},
	{op: "getAllStudents", kind: orList, base: RosteringBase, path: "/students", entity: records.User, fixed: isStudent},
	{op: "getStudent", kind: orGet, base: RosteringBase, path: "/students/{sourcedId}", entity: records.User, fixed: isStudent},
	{op: "getClassesForStudent", kind: orList, base: RosteringBase, path: "/students/{studentSourcedId}/classes", entity: records.Class,
		parents: []parent{{param: "studentSourcedId", entity: records.User, where: isStudent}}, rel: &rel{classesOfUser, []string{"studentSourcedId"}}},
	{op: "getAllTeachers", kind: orList, base: RosteringBase, path: "/teachers", entity: records.User, fixed: isTeacher},
	{op: "getTeacher", kind: orGet, base: RosteringBase, path: "/teachers/{sourcedId}", entity: records.User, fixed: isTeacher},
	{op: "getClassesForTeacher", kind: orList, base: RosteringBase, path: "/teachers/{teacherSourcedId}/classes", entity: records.Class,
		parents: []parent{{param: "teacherSourcedId", entity: records.User, where: isTeacher}}, rel: &rel{classesOfUser, []string{"teacherSourcedId"}}},
	{op: "getAllTerms", kind: orList, base: RosteringBase, path: "/terms", entity: records.AcademicSession, fixed: isTerm},
	{op: "getTerm", kind: orGet, base: RosteringBase, path: "/terms/{sourcedId}", entity: records.AcademicSession, fixed: isTerm},
	{op: "getClassesForTerm", kind: orList, base: RosteringBase, path: "/terms/{termSourcedId}/classes", entity: records.Class,
		parents: []parent{{param: "termSourcedId", entity: records.AcademicSession, where: isTerm}}, rel: &rel{"t.sourced_id IN (SELECT ct.owner_id FROM class_terms ct WHERE ct.ref_id = ?)", []string{"termSourcedId"}}},
	{op: "getGradingPeriodsForTerm", kind: orList, base: RosteringBase, path: "/terms/{termSourcedId}/gradingPeriods", entity: records.AcademicSession, fixed: isGradingPeriod,
		parents: []parent{{param: "termSourcedId", entity: records.AcademicSession, where: isTerm}}, rel: &rel{"t.parent_id = ?", []string{"termSourcedId"}}},
	{op: "getAllUsers", kind: orList, base: RosteringBase, path: "/users", entity: records.User},
	{op: "getUser", kind: orGet, base: RosteringBase, path: "/users/{sourcedId}", entity: records.User},
	{op: "getClassesForUser", kind: orList, base: RosteringBase, path: "/users/{userSourcedId}/classes", entity: records.Class,
		parents: []parent{{param: "userSourcedId", entity: records.User}}, rel: &rel{classesOfUser, []string{"userSourcedId"}}},

	// Gradebook.
	{op: "getAllAssessmentLineItems", kind: orList, base: GradebookBase, path: "/assessmentLineItems", entity: records.AssessmentLineItem},
	{op: "getAssessmentLineItem", kind: orGet, base: GradebookBase, path: "/assessmentLineItems/{sourcedId}", entity: records.AssessmentLineItem},
	{op: "putAssessmentLineItem", kind: orPut, base: GradebookBase, path: "/assessmentLineItems/{sourcedId}", entity: records.AssessmentLineItem},
	{op: "deleteAssessmentLineItem", kind: orDelete, base: GradebookBase, path: "/assessmentLineItems/{sourcedId}", entity: records.AssessmentLineItem},
	{op: "getAllAssessmentResults", kind: orList, base: GradebookBase, path: "/assessmentResults", entity: records.AssessmentResult},
	{op: "getAssessmentResult", kind: orGet, base: GradebookBase, path: "/assessmentResults/{sourcedId}", entity: records.AssessmentResult},
	{op: "putAssessmentResult", kind: orPut, base: GradebookBase, path: "/assessmentResults/{sourcedId}", entity: records.AssessmentResult},
	{op: "deleteAssessmentResult", kind: orDelete, base: GradebookBase, path: "/assessmentResults/{sourcedId}", entity: records.AssessmentResult},
	{op: "getAllCategories", kind: orList, base: GradebookBase, path: "/categories", entity: records.Category},
	{op: "getCategory", kind: orGet, base: GradebookBase, path: "/categories/{sourcedId}", entity: records.Category},
	{op: "putCategory", kind: orPut, base: GradebookBase, path: "/categories/{sourcedId}", entity: records.Category},
	{op: "deleteCategory", kind: orDelete, base: GradebookBase, path: "/categories/{sourcedId}", entity: records.Category},
	{op: "postResultsForAcademicSessionForClass", kind: orPost, base: GradebookBase, path: "/classes/{classSourcedId}/academicSessions/{academicSessionSourcedId}/results", entity: records.Result,
		parents: []parent{pClass, {param: "academicSessionSourcedId", entity: records.AcademicSession}}, force: map[string]string{"class": "classSourcedId"}},
	{op: "getCategoriesForClass", kind: orList, base: GradebookBase, path: "/classes/{classSourcedId}/categories", entity: records.Category,
		parents: []parent{pClass}, rel: &rel{"t.sourced_id IN (SELECT l.category_id FROM line_items l WHERE l.class_id = ?)", []string{"classSourcedId"}}},
	{op: "getLineItemsForClass", kind: orList, base: GradebookBase, path: "/classes/{classSourcedId}/lineItems", entity: records.LineItem,
		parents: []parent{pClass}, rel: &rel{"t.class_id = ?", []string{"classSourcedId"}}},
	{op: "postLineItemsForClass", kind: orPost, base: GradebookBase, path: "/classes/{classSourcedId}/lineItems", entity: records.LineItem,
		parents: []parent{pClass}, force: map[string]string{"class": "classSourcedId"}},
	{op: "getResultsForLineItemForClass", kind: orList, base: GradebookBase, path: "/classes/{classSourcedId}/lineItems/{lineItemSourcedId}/results", entity: records.Result,
		parents: []parent{pClass, {param: "lineItemSourcedId", entity: records.LineItem, where: "t.class_id = ?", params: []string{"classSourcedId"}}},
		rel:     &rel{"t.line_item_id = ?", []string{"lineItemSourcedId"}}},
	{op: "getResultsForClass", kind: orList, base: GradebookBase, path: "/classes/{classSourcedId}/results", entity: records.Result,
		parents: []parent{pClass}, rel: &rel{"t.line_item_id IN (SELECT l.sourced_id FROM line_items l WHERE l.class_id = ?)", []string{"classSourcedId"}}},
	{op: "getScoreScalesForClass", kind: orList, base: GradebookBase, path: "/classes/{classSourcedId}/scoreScales", entity: records.ScoreScale,
		parents: []parent{pClass}, rel: &rel{"t.class_id = ?", []string{"classSourcedId"}}},
	{op: "getResultsForStudentForClass", kind: orList, base: GradebookBase, path: "/classes/{classSourcedId}/students/{studentSourcedId}/results", entity: records.Result,
		parents: []parent{pClass, {param: "studentSourcedId", entity: records.User, where: isStudent}},
		rel:     &rel{"t.student_id = ? AND t.line_item_id IN (SELECT l.sourced_id FROM line_items l WHERE l.class_id = ?)", []string{"studentSourcedId", "classSourcedId"}}},
	{op: "getAllLineItems", kind: orList, base: GradebookBase, path: "/lineItems", entity: records.LineItem},
	{op: "postResultsForLineItem", kind: orPost, base: GradebookBase, path: "/lineItems/{lineItemSourcedId}/results", entity: records.Result,
		parents: []parent{{param: "lineItemSourcedId", entity: records.LineItem}}, force: map[string]string{"lineItem": "lineItemSourcedId"}},
	{op: "getLineItem", kind: orGet, base: GradebookBase, path: "/lineItems/{sourcedId}", entity: records.LineItem},
	{op: "putLineItem", kind: orPut, base: GradebookBase, path: "/lineItems/{sourcedId}", entity: records.LineItem},
	{op: "deleteLineItem", kind: orDelete, base: GradebookBase, path: "/lineItems/{sourcedId}", entity: records.LineItem},
	{op: "getAllResults", kind: orList, base: GradebookBase, path: "/results", entity: records.Result},
	{op: "getResult", kind: orGet, base: GradebookBase, path: "/results/{sourcedId}", entity: records.Result},
	{op: "putResult", kind: orPut, base: GradebookBase, path: "/results/{sourcedId}", entity: records.Result},
	{op: "deleteResult", kind: orDelete, base: GradebookBase, path: "/results/{sourcedId}", entity: records.Result},
	{op: "postLineItemsForSchool", kind: orPost, base: GradebookBase, path: "/schools/{schoolSourcedId}/lineItems", entity: records.LineItem,
		parents: []parent{pSchool}, force: map[string]string{"school": "schoolSourcedId"}},
	{op: "getScoreScalesForSchool", kind: orList, base: GradebookBase, path: "/schools/{schoolSourcedId}/scoreScales", entity: records.ScoreScale,
		parents: []parent{pSchool}, rel: &rel{"t.class_id IN (SELECT c.sourced_id FROM classes c WHERE c.school_id = ?)", []string{"schoolSourcedId"}}},
	{op: "getAllScoreScales", kind: orList, base: GradebookBase, path: "/scoreScales", entity: records.ScoreScale},
	{op: "getScoreScale", kind: orGet, base: GradebookBase, path: "/scoreScales/{sourcedId}", entity: records.ScoreScale},
	{op: "putScoreScale", kind: orPut, base: GradebookBase, path: "/scoreScales/{sourcedId}", entity: records.ScoreScale},
	{op: "deleteScoreScale", kind: orDelete, base: GradebookBase, path: "/scoreScales/{sourcedId}", entity: records.ScoreScale},
}
