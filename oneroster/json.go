// Package oneroster is the OneRoster 1.2 REST representation of records: objects and
// collections as JSON (GUIDRefs with href, sourcedId and type), strict decoding of
// request bodies, and the imsx_StatusInfo error body.
//
// The query-parameter grammar is in oneroster/query and the CSV file set in
// oneroster/csvspec. This package imports records only.
package oneroster

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"registrar/internal/jsonenc"
	"registrar/records"
)

// appendHref appends the canonical URL of e's object id as a JSON string, with no
// string built on the way: the base as jsonenc escapes it, then the path, whose
// parts need no escaping in JSON (the entity's service and path are fixed names and
// the id is percent-encoded to unreserved characters).
func appendHref(b []byte, base string, e *records.Entity, id string) []byte {
	b = jsonenc.AppendString(b, base)
	b = append(b[:len(b)-1], "/ims/oneroster/"...) // reopen the string
	b = append(b, e.Service...)
	b = append(b, "/v1p2/"...)
	b = append(b, e.Path...)
	b = append(b, '/')
	b = appendEscapedPath(b, id)
	return append(b, '"')
}

// appendEscapedPath appends s as one path segment: unreserved characters (RFC 3986)
// as they are, every other byte as %XX.
func appendEscapedPath(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_' || c == '.' || c == '~' {
			b = append(b, c)
		} else {
			b = append(b, '%', "0123456789ABCDEF"[c>>4], "0123456789ABCDEF"[c&15])
		}
	}
	return b
}

// Encoder writes objects as OneRoster JSON.
type Encoder struct {
	Base string // scheme://host of hrefs
}

// AppendObject appends obj as a JSON object, fields in the entity's order. When fields
// is non-empty only those fields are written.
func (enc Encoder) AppendObject(b []byte, e *records.Entity, obj records.Object, fields []string) []byte {
	b = append(b, '{')
	first := true
	for i := range e.Fields {
		f := &e.Fields[i]
		v, ok := obj[f.Name]
		if !ok {
			continue
		}
		if len(fields) > 0 && !contains(fields, f.Name) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = jsonenc.AppendString(b, f.Name)
		b = append(b, ':')
		b = enc.appendValue(b, f, v)
	}
	return append(b, '}')
}

func contains(l []string, s string) bool {
	for _, x := range l {
		if x == s {
			return true
		}
	}
	return false
}

func (enc Encoder) appendRef(b []byte, target, id string) []byte {
	te, _ := records.EntityNamed(target)
	b = append(b, `{"href":`...)
	b = appendHref(b, enc.Base, te, id)
	b = append(b, `,"sourcedId":`...)
	b = jsonenc.AppendString(b, id)
	b = append(b, `,"type":`...)
	b = jsonenc.AppendString(b, te.Name)
	return append(b, '}')
}

func (enc Encoder) appendValue(b []byte, f *records.Field, v any) []byte {
	switch f.Kind {
	case records.KFloat:
		x, _ := v.(float64)
		return appendFloat(b, x)
	case records.KRef:
		return enc.appendRef(b, f.Target, v.(string))
	case records.KRefs, records.KChildren:
		b = append(b, '[')
		for i, id := range v.([]string) {
			if i > 0 {
				b = append(b, ',')
			}
			b = enc.appendRef(b, f.Target, id)
		}
		return append(b, ']')
	case records.KStrings:
		b = append(b, '[')
		for i, s := range v.([]string) {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsonenc.AppendString(b, s)
		}
		return append(b, ']')
	case records.KJSON:
		return append(b, v.(json.RawMessage)...)
	case records.KRoles:
		b = append(b, '[')
		for i, r := range v.([]records.Role) {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"roleType":`...)
			b = jsonenc.AppendString(b, r.RoleType)
			b = append(b, `,"role":`...)
			b = jsonenc.AppendString(b, r.Role)
			b = append(b, `,"org":`...)
			b = enc.appendRef(b, "org", r.Org)
			if r.UserProfile != "" {
				b = append(b, `,"userProfile":`...)
				b = jsonenc.AppendString(b, r.UserProfile)
			}
			if r.BeginDate != "" {
				b = append(b, `,"beginDate":`...)
				b = jsonenc.AppendString(b, r.BeginDate)
			}
			if r.EndDate != "" {
				b = append(b, `,"endDate":`...)
				b = jsonenc.AppendString(b, r.EndDate)
			}
			b = append(b, '}')
		}
		return append(b, ']')
	}
	s, _ := v.(string)
	return jsonenc.AppendString(b, s)
}

func appendFloat(b []byte, x float64) []byte {
	if math.IsNaN(x) || math.IsInf(x, 0) {
		return append(b, "null"...)
	}
	return strconv.AppendFloat(b, x, 'g', -1, 64)
}

// Decode parses one object of entity e from a request body, strictly: unknown
// fields, wrong types and malformed references are errors that name the field.
func Decode(e *records.Entity, r io.Reader) (records.Object, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, err
	}
	if !utf8.Valid(data) {
		return nil, invalid("body", "is not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var envelope map[string]json.RawMessage
	if err := dec.Decode(&envelope); err != nil {
		return nil, jsonError(err)
	}
	if dec.More() {
		return nil, invalid("body", "has more than one JSON value")
	}
	raw, ok := envelope[e.Single]
	if !ok || len(envelope) != 1 {
		return nil, invalid("body", fmt.Sprintf("must be {%q: {...}}", e.Single))
	}
	return DecodeObject(e, raw)
}

// DecodeObject parses the inner object (without envelope).
func DecodeObject(e *records.Entity, raw json.RawMessage) (records.Object, error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, jsonError(err)
	}
	if m == nil {
		return nil, invalid(e.Single, "must be a JSON object")
	}
	obj := make(records.Object, len(m))
	var errs []records.FieldError
	for name, v := range m {
		f, ok := e.Field(name)
		if !ok {
			errs = append(errs, records.FieldError{Field: name, Message: "is not a field of " + e.Name})
			continue
		}
		if f.ReadOnly {
			continue // derived by the server (dateLastModified, children)
		}
		if v == nil {
			continue
		}
		val, msg := convert(f, v)
		if msg != "" {
			errs = append(errs, records.FieldError{Field: name, Message: msg})
			continue
		}
		obj[name] = val
	}
	if len(errs) > 0 {
		return nil, records.InvalidFields(e.Name, errs)
	}
	return obj, nil
}

func invalid(field, msg string) error {
	return &records.Error{Code: records.Invalid, CodeMinor: "invaliddata", Field: field, Message: field + " " + msg}
}

func jsonError(err error) error {
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case err == io.EOF:
		return invalid("body", "is empty: a JSON object is required")
	case asErr(err, &se):
		return invalid("body", fmt.Sprintf("is not valid JSON: %s at byte %d", se.Error(), se.Offset))
	case asErr(err, &te):
		return invalid("body", fmt.Sprintf("is not valid: expected %s at byte %d", te.Type, te.Offset))
	}
	return invalid("body", "is not valid JSON: "+err.Error())
}

func asErr[T error](err error, target *T) bool {
	t, ok := err.(T)
	if ok {
		*target = t
	}
	return ok
}

func refID(v any, target string) (string, string) {
	m, ok := v.(map[string]any)
	if !ok {
		return "", "must be a reference object {\"sourcedId\": ..., \"type\": ...}"
	}
	id, ok := m["sourcedId"].(string)
	if !ok || id == "" {
		return "", "reference must have a sourcedId string"
	}
	if t, ok := m["type"]; ok && t != target {
		return "", fmt.Sprintf("reference type must be %q", target)
	}
	for k := range m {
		if k != "sourcedId" && k != "type" && k != "href" {
			return "", fmt.Sprintf("reference has an unknown field %q", k)
		}
	}
	return id, ""
}

// convert turns a decoded JSON value into the field's Object value.
func convert(f *records.Field, v any) (any, string) {
	switch f.Kind {
	case records.KFloat:
		n, ok := v.(json.Number)
		if !ok {
			return nil, "must be a number"
		}
		x, err := n.Float64()
		if err != nil || math.IsInf(x, 0) {
			return nil, "must be a finite number"
		}
		return x, ""
	case records.KRef:
		return refID(v, f.Target)
	case records.KRefs:
		l, ok := v.([]any)
		if !ok {
			return nil, "must be a list of references"
		}
		out := make([]string, 0, len(l))
		for i, x := range l {
			id, msg := refID(x, f.Target)
			if msg != "" {
				return nil, fmt.Sprintf("element %d: %s", i, msg)
			}
			out = append(out, id)
		}
		return out, ""
	case records.KStrings:
		l, ok := v.([]any)
		if !ok {
			return nil, "must be a list of strings"
		}
		out := make([]string, 0, len(l))
		for i, x := range l {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Sprintf("element %d must be a string", i)
			}
			out = append(out, s)
		}
		return out, ""
	case records.KJSON:
		// OneRoster's structured fields are all lists (userIds, learningObjectiveSet,
		// scoreScaleValue, ...) except metadata, an object.
		if _, isList := v.([]any); f.Name != "metadata" && !isList {
			return nil, "must be a list"
		}
		if _, isObject := v.(map[string]any); f.Name == "metadata" && !isObject {
			return nil, "must be an object"
		}
		b, err := json.Marshal(v)
		if err != nil {
			return nil, "is not valid JSON"
		}
		return json.RawMessage(b), ""
	case records.KRoles:
		l, ok := v.([]any)
		if !ok {
			return nil, "must be a list of roles"
		}
		roles := make([]records.Role, 0, len(l))
		for i, x := range l {
			m, ok := x.(map[string]any)
			if !ok {
				return nil, fmt.Sprintf("role %d must be an object", i)
			}
			var r records.Role
			for k, val := range m {
				switch k {
				case "org":
					id, msg := refID(val, "org")
					if msg != "" {
						return nil, fmt.Sprintf("role %d: org %s", i, msg)
					}
					r.Org = id
				case "roleType", "role", "userProfile", "beginDate", "endDate":
					s, ok := val.(string)
					if !ok {
						return nil, fmt.Sprintf("role %d: %s must be a string", i, k)
					}
					switch k {
					case "roleType":
						r.RoleType = s
					case "role":
						r.Role = s
					case "userProfile":
						r.UserProfile = s
					case "beginDate":
						r.BeginDate = s
					case "endDate":
						r.EndDate = s
					}
				default:
					return nil, fmt.Sprintf("role %d: %q is not a field of a role", i, k)
				}
			}
			roles = append(roles, r)
		}
		return roles, ""
	case records.KBool:
		// OneRoster carries booleans as the strings "true"/"false"; accept JSON booleans too.
		if b, ok := v.(bool); ok {
			return strconv.FormatBool(b), ""
		}
	}
	s, ok := v.(string)
	if !ok {
		return nil, "must be a string"
	}
	return s, ""
}

// StatusInfo is the OneRoster imsx_StatusInfo error body.
type StatusInfo struct {
	CodeMajor   string     `json:"imsx_codeMajor"`
	Severity    string     `json:"imsx_severity"`
	Description string     `json:"imsx_description,omitempty"`
	CodeMinor   *CodeMinor `json:"imsx_CodeMinor,omitempty"`
}

// CodeMinor carries the minor status codes.
type CodeMinor struct {
	Fields []CodeMinorField `json:"imsx_codeMinorField"`
}

// CodeMinorField is one minor status code.
type CodeMinorField struct {
	Name  string `json:"imsx_codeMinorFieldName"`
	Value string `json:"imsx_codeMinorFieldValue"`
}

// Failure builds an error body.
func Failure(codeMinor, description string) StatusInfo {
	return StatusInfo{CodeMajor: "failure", Severity: "error", Description: description,
		CodeMinor: &CodeMinor{Fields: []CodeMinorField{{Name: "TargetEndSystem", Value: codeMinor}}}}
}
