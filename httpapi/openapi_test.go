package httpapi_test

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"registrar/authz"
	"registrar/httpapi"
	"registrar/internal/testdistrict"
	"registrar/oneroster"
)

// The official OneRoster 1.2 OpenAPI documents, read as far as the tests need them.

type oaSchema struct {
	Ref                  string               `json:"$ref"`
	Type                 string               `json:"type"`
	Format               string               `json:"format"`
	Pattern              string               `json:"pattern"`
	Enum                 []any                `json:"enum"`
	Required             []string             `json:"required"`
	Properties           map[string]*oaSchema `json:"properties"`
	Items                *oaSchema            `json:"items"`
	AnyOf                []*oaSchema          `json:"anyOf"`
	AdditionalProperties any                  `json:"additionalProperties"`
}

type oaContent map[string]struct {
	Schema *oaSchema `json:"schema"`
}

type oaOperation struct {
	OperationID string `json:"operationId"`
	Parameters  []struct {
		Name string `json:"name"`
		In   string `json:"in"`
	} `json:"parameters"`
	RequestBody *struct {
		Content oaContent `json:"content"`
	} `json:"requestBody"`
	Responses map[string]struct {
		Content oaContent      `json:"content"`
		Headers map[string]any `json:"headers"`
	} `json:"responses"`
}

type oaDoc struct {
	base       string
	Paths      map[string]map[string]*oaOperation `json:"paths"`
	Components struct {
		Schemas map[string]*oaSchema `json:"schemas"`
	} `json:"components"`
}

// docOp is one documented OneRoster operation.
type docOp struct {
	doc    *oaDoc
	method string // upper case
	path   string // base + path, as in the document
	op     *oaOperation
}

func (o docOp) String() string { return o.method + " " + o.path }

// schema returns the (resolved) schema of the JSON response for status, or nil.
func (o docOp) schema(status string) *oaSchema {
	resp, ok := o.op.Responses[status]
	if !ok {
		return nil
	}
	c, ok := resp.Content["application/json"]
	if !ok || c.Schema == nil {
		return nil
	}
	return o.doc.resolve(c.Schema)
}

var loadDocs = sync.OnceValues(func() ([]*oaDoc, error) {
	var out []*oaDoc
	for _, src := range []struct {
		base string
		data []byte
	}{{httpapi.RosteringBase, oneroster.RosteringOpenAPI}, {httpapi.GradebookBase, oneroster.GradebookOpenAPI}} {
		d := &oaDoc{base: src.base}
		if err := json.Unmarshal(src.data, d); err != nil {
			return nil, fmt.Errorf("%s: %w", src.base, err)
		}
		out = append(out, d)
	}
	return out, nil
})

// documentedOps lists every operation of both documents, sorted by path and method.
func documentedOps(t *testing.T) []docOp {
	t.Helper()
	docs, err := loadDocs()
	if err != nil {
		t.Fatalf("the embedded OpenAPI documents do not parse: %v", err)
	}
	var out []docOp
	for _, d := range docs {
		for p, item := range d.Paths {
			for m, op := range item {
				out = append(out, docOp{doc: d, method: strings.ToUpper(m), path: d.base + p, op: op})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	if len(out) < 70 {
		t.Fatalf("the OpenAPI documents list %d operations, want the 75 or so of OneRoster 1.2", len(out))
	}
	return out
}

// statusInfoSchema is imsx_StatusInfoDType of the rostering document.
func statusInfoSchema(t *testing.T) (*oaDoc, *oaSchema) {
	t.Helper()
	docs, err := loadDocs()
	if err != nil {
		t.Fatal(err)
	}
	return docs[0], docs[0].Components.Schemas["imsx_StatusInfoDType"]
}

func (d *oaDoc) resolve(s *oaSchema) *oaSchema {
	for s != nil && s.Ref != "" {
		s = d.Components.Schemas[strings.TrimPrefix(s.Ref, "#/components/schemas/")]
	}
	return s
}

// envelope returns the single property of a Set or Single schema (the JSON envelope
// key: "users", "user") and its schema.
func (d *oaDoc) envelope(s *oaSchema) (string, *oaSchema) {
	s = d.resolve(s)
	if s == nil || len(s.Properties) != 1 {
		return "", nil
	}
	for k, v := range s.Properties {
		return k, d.resolve(v)
	}
	return "", nil
}

var patterns sync.Map // pattern -> *regexp.Regexp, or nil when Go's RE2 cannot compile it (lookaheads)

func compiled(p string) *regexp.Regexp {
	if re, ok := patterns.Load(p); ok {
		r, _ := re.(*regexp.Regexp)
		return r
	}
	re, err := regexp.Compile(p)
	if err != nil {
		re = nil
	}
	patterns.Store(p, re)
	return re
}

// validate checks v against s as JSON Schema would for the keywords the OneRoster
// documents use (type, required, properties, additionalProperties, items, anyOf, enum,
// format, pattern), and returns every problem, each prefixed by its JSON path.
func (d *oaDoc) validate(s *oaSchema, v any, at string) []string {
	s = d.resolve(s)
	if s == nil {
		return nil
	}
	if len(s.AnyOf) > 0 {
		var all []string
		for _, alt := range s.AnyOf {
			p := d.validate(alt, v, at)
			if len(p) == 0 {
				return nil
			}
			all = append(all, p...)
		}
		return []string{fmt.Sprintf("%s: %s matches no alternative of anyOf (%s)", at, brief(v), strings.Join(all, "; "))}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, at+": "+fmt.Sprintf(format, args...)) }
	typ := s.Type
	if typ == "" && s.Properties != nil {
		typ = "object"
	}
	switch typ {
	case "object":
		m, ok := v.(map[string]any)
		if !ok {
			bad("got %s, want an object", brief(v))
			return problems
		}
		for _, r := range s.Required {
			if _, ok := m[r]; !ok {
				bad("required field %q is missing", r)
			}
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ps, ok := s.Properties[k]
			if !ok {
				if s.AdditionalProperties == false {
					bad("field %q is not in the schema", k)
				}
				continue
			}
			problems = append(problems, d.validate(ps, m[k], at+"."+k)...)
		}
	case "array":
		l, ok := v.([]any)
		if !ok {
			bad("got %s, want an array", brief(v))
			return problems
		}
		for i, x := range l {
			problems = append(problems, d.validate(s.Items, x, fmt.Sprintf("%s[%d]", at, i))...)
		}
	case "string":
		str, ok := v.(string)
		if !ok {
			bad("got %s, want a string", brief(v))
			return problems
		}
		if len(s.Enum) > 0 && !slices.Contains(s.Enum, any(str)) {
			bad("%q is not one of %v", str, s.Enum)
		}
		if s.Pattern != "" {
			if re := compiled(s.Pattern); re != nil && !re.MatchString(str) {
				bad("%q does not match %s", str, s.Pattern)
			}
		}
		switch s.Format {
		case "date":
			if _, err := time.Parse(time.DateOnly, str); err != nil {
				bad("%q is not a date", str)
			}
		case "date-time":
			if _, err := time.Parse(time.RFC3339Nano, str); err != nil {
				bad("%q is not a date-time", str)
			}
		case "uri":
			if u, err := url.Parse(str); err != nil || u.Scheme == "" {
				bad("%q is not an absolute URI", str)
			}
		}
	case "number", "integer":
		if _, ok := v.(float64); !ok {
			bad("got %s, want a number", brief(v))
		}
	case "boolean":
		if _, ok := v.(bool); !ok {
			bad("got %s, want a boolean", brief(v))
		}
	}
	return problems
}

func brief(v any) string {
	b, _ := json.Marshal(v)
	if len(b) > 60 {
		b = append(b[:57], "..."...)
	}
	return string(b)
}

// routeTable returns the routes of a server; they do not depend on its store.
func routeTable() []httpapi.RouteInfo {
	s := httpapi.New(httpapi.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	return s.Routes()
}

func TestEveryDocumentedOperationHasARouteAndBack(t *testing.T) {
	t.Parallel()
	ops := documentedOps(t)
	routes := routeTable()
	byKey := map[string]httpapi.RouteInfo{}
	for _, r := range routes {
		k := r.Method + " " + r.Pattern
		if _, dup := byKey[k]; dup {
			t.Errorf("route %s is registered twice", k)
		}
		byKey[k] = r
	}
	documented := map[string]bool{}
	for _, o := range ops {
		documented[o.String()] = true
		t.Run(o.String()+" has a route named "+o.op.OperationID, func(t *testing.T) {
			r, ok := byKey[o.String()]
			if !ok {
				t.Fatalf("no route for documented operation %s (%s)", o, o.op.OperationID)
			}
			if r.Op != o.op.OperationID {
				t.Errorf("route op = %q, want the operationId %q", r.Op, o.op.OperationID)
			}
			if r.Public {
				t.Errorf("route %s is public, want it to require a token", o)
			}
			if !r.Audited {
				t.Errorf("route %s is not audited, want every OneRoster operation audited", o)
			}
		})
	}
	for _, r := range routes {
		if !strings.HasPrefix(r.Pattern, "/ims/oneroster/") {
			continue
		}
		k := r.Method + " " + r.Pattern
		if !documented[k] {
			t.Errorf("route %s (%s) is under /ims/oneroster/ but in neither OpenAPI document", k, r.Op)
		}
	}
}

func TestOpenAPIJSONCoversEveryRoute(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	r := send(t, h, "GET", "/openapi.json", "", nil)
	if r.status != 200 {
		t.Fatalf("GET /openapi.json: status %d, want 200: %s", r.status, r.body)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comps   struct {
			Schemas map[string]json.RawMessage `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatalf("/openapi.json is not an OpenAPI document: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi = %q, want 3.x", doc.OpenAPI)
	}
	for _, rt := range routeTable() {
		t.Run(rt.Method+" "+rt.Pattern+" is in /openapi.json", func(t *testing.T) {
			item, ok := doc.Paths[rt.Pattern]
			if !ok {
				t.Fatalf("path %s is missing from /openapi.json", rt.Pattern)
			}
			raw, ok := item[strings.ToLower(rt.Method)]
			if !ok {
				t.Fatalf("method %s of %s is missing from /openapi.json (it has %v)", rt.Method, rt.Pattern, sortedKeys(item))
			}
			var op struct {
				OperationID string `json:"operationId"`
				Parameters  []struct {
					Name string `json:"name"`
					In   string `json:"in"`
				} `json:"parameters"`
			}
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			if strings.HasPrefix(rt.Pattern, "/ims/oneroster/") && op.OperationID != rt.Op {
				t.Errorf("operationId = %q, want %q", op.OperationID, rt.Op)
			}
			// Every path parameter of the pattern is declared.
			for _, seg := range strings.Split(rt.Pattern, "/") {
				if !strings.HasPrefix(seg, "{") {
					continue
				}
				name := strings.Trim(seg, "{}.")
				if !slices.ContainsFunc(op.Parameters, func(p struct {
					Name string `json:"name"`
					In   string `json:"in"`
				}) bool {
					return p.Name == name && p.In == "path"
				}) {
					t.Errorf("path parameter %q is not declared", name)
				}
			}
		})
	}
	for _, name := range []string{"UserDType", "LineItemDType", "imsx_StatusInfoDType"} {
		if _, ok := doc.Comps.Schemas[name]; !ok {
			t.Errorf("components.schemas has no %s", name)
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func TestHealthReadinessAndMetricsAnswer(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tests := []struct {
		name, path string
		want       string // a substring of the body
	}{
		{"healthz says ok", "/healthz", `"status":"ok"`},
		{"readyz says ready with the database checked", "/readyz", `"database":"ok"`},
		{"metrics are Prometheus text", "/metrics", "# TYPE registrar_http_requests_total counter"},
	}
	// Something for /metrics to count.
	send(t, h, "GET", "/healthz", "", nil)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := send(t, h, "GET", tt.path, "", nil)
			if r.status != 200 {
				t.Fatalf("GET %s: status %d, want 200: %s", tt.path, r.status, r.body)
			}
			if !strings.Contains(string(r.body), tt.want) {
				t.Errorf("GET %s: body does not contain %q:\n%s", tt.path, tt.want, clipBody(r.body))
			}
		})
	}
}

func TestMetricsLabelRoutesByTemplateNeverByRawPath(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tok := h.client(authz.AllScopes)
	// Requests whose paths carry ids: found, not found, unknown paths, bad methods.
	paths := []struct{ method, path string }{
		{"GET", orR + "/students/" + testdistrict.Minor},
		{"GET", orR + "/users/" + testdistrict.Eligible},
		{"GET", orR + "/classes/" + testdistrict.ClassMathA + "/students"},
		{"GET", orR + "/schools/" + testdistrict.SchoolA + "/classes/" + testdistrict.ClassSciA + "/enrollments"},
		{"GET", orR + "/demographics/" + testdistrict.Student3},
		{"GET", orR + "/students/" + testdistrict.StudentB + "-no-such"},
		{"GET", orG + "/results/" + testdistrict.ResultMinA},
		{"GET", orG + "/lineItems/" + testdistrict.LineItemB},
		{"DELETE", orG + "/results/" + testdistrict.ResultB + "-no-such"},
		{"GET", orR + "/no-such-collection/" + testdistrict.Guardian},
		{"GET", "/v1/" + testdistrict.Guardian2},
		{"PATCH", orR + "/users/" + testdistrict.TeacherC},
	}
	for _, p := range paths {
		send(t, h, p.method, p.path, tok, nil)
	}
	r := send(t, h, "GET", "/metrics", "", nil)
	if r.status != 200 {
		t.Fatalf("GET /metrics: status %d", r.status)
	}
	body := string(r.body)
	if !strings.Contains(body, `route="`+orR+`/students/{sourcedId}"`) {
		t.Errorf("/metrics has no series for the route template %s/students/{sourcedId}", orR)
	}
	for _, id := range []string{testdistrict.Minor, testdistrict.Eligible, testdistrict.ClassMathA, testdistrict.ClassSciA, testdistrict.SchoolA,
		testdistrict.Student3, testdistrict.StudentB, testdistrict.ResultMinA, testdistrict.LineItemB, testdistrict.ResultB,
		testdistrict.Guardian, testdistrict.Guardian2, testdistrict.TeacherC, "no-such"} {
		if strings.Contains(body, id) {
			i := strings.Index(body, id)
			t.Errorf("/metrics contains the id %q: %q", id, body[max(0, i-120):min(len(body), i+40)])
		}
	}
}

func clipBody(b []byte) string {
	if len(b) > 2000 {
		return string(b[:2000]) + "..."
	}
	return string(b)
}
