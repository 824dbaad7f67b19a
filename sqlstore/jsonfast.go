package sqlstore

import (
	"encoding/json"
	"strings"
	"unicode/utf8"

	"registrar/records"
)

// Reads decode a few small JSON shapes in every row: lists of ids, roles, and the
// sealed fields' object. encoding/json's reflection made that decoding most of a
// list's cost, so these parse the shapes registrar itself writes (compact, no
// escapes) directly, and hand anything else (an escape, white space, an unexpected
// type) to encoding/json, which stays the one definition of what is accepted.

// decodeStrings decodes a JSON array of strings.
func decodeStrings(s string) ([]string, error) {
	if l, ok := fastStrings(s); ok {
		return l, nil
	}
	var l []string
	err := json.Unmarshal([]byte(s), &l)
	return l, err
}

// fastStrings parses `["a","b"]` with no escapes and no white space.
func fastStrings(s string) ([]string, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	body := s[1 : len(s)-1]
	if body == "" {
		return []string{}, true
	}
	out := make([]string, 0, strings.Count(body, `","`)+1)
	for {
		v, rest, ok := fastString(body)
		if !ok {
			return nil, false
		}
		out = append(out, v)
		if rest == "" {
			return out, true
		}
		if rest[0] != ',' {
			return nil, false
		}
		body = rest[1:]
	}
}

// fastString takes a leading JSON string with no escapes, control characters or
// invalid UTF-8 and
// returns its value and what follows.
func fastString(s string) (string, string, bool) {
	if len(s) < 2 || s[0] != '"' {
		return "", "", false
	}
	ascii := true
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			if !ascii && !utf8.ValidString(s[1:i]) {
				return "", "", false // encoding/json replaces invalid bytes
			}
			return s[1:i], s[i+1:], true
		case c == '\\' || c < 0x20:
			return "", "", false
		case c >= utf8.RuneSelf:
			ascii = false
		}
	}
	return "", "", false
}

// decodeRoles decodes the stored roles list.
func decodeRoles(s string) ([]records.Role, error) {
	if l, ok := fastRoles(s); ok {
		return l, nil
	}
	var roles []records.Role
	err := json.Unmarshal([]byte(s), &roles)
	return roles, err
}

func fastRoles(s string) ([]records.Role, bool) {
	if len(s) < 2 || s[0] != '[' || s[len(s)-1] != ']' {
		return nil, false
	}
	body := s[1 : len(s)-1]
	out := make([]records.Role, 0, strings.Count(body, "{"))
	for body != "" {
		var r records.Role
		var ok bool
		if body, ok = fastObject(body, func(k, v string) bool {
			switch k {
			case "roleType":
				r.RoleType = v
			case "role":
				r.Role = v
			case "org":
				r.Org = v
			case "userProfile":
				r.UserProfile = v
			case "beginDate":
				r.BeginDate = v
			case "endDate":
				r.EndDate = v
			default:
				return false
			}
			return true
		}); !ok {
			return nil, false
		}
		out = append(out, r)
		if body == "" {
			break
		}
		if body[0] != ',' || len(body) == 1 {
			return nil, false
		}
		body = body[1:]
	}
	return out, true
}

// fastObject parses a leading `{"k":"v",...}` whose values are all strings, calling
// set for each pair, and returns what follows.
func fastObject(s string, set func(k, v string) bool) (string, bool) {
	if s == "" || s[0] != '{' {
		return "", false
	}
	s = s[1:]
	if s != "" && s[0] == '}' {
		return s[1:], true
	}
	for {
		k, rest, ok := fastString(s)
		if !ok || rest == "" || rest[0] != ':' {
			return "", false
		}
		v, rest, ok := fastString(rest[1:])
		if !ok || !set(k, v) || rest == "" {
			return "", false
		}
		switch rest[0] {
		case ',':
			s = rest[1:]
		case '}':
			return rest[1:], true
		default:
			return "", false
		}
	}
}

// decodeSealedObject decodes the sealed fields' plaintext: an object of field names
// to JSON values. String values come back unquoted in strs, others (lists, numbers)
// as raw JSON in raws. Input the fast parser does not take goes to encoding/json,
// whose raw values then all come back in raws.
func decodeSealedObject(pt []byte) (strs map[string]string, raws map[string]json.RawMessage, err error) {
	if strs, raws, ok := fastSealed(string(pt)); ok {
		return strs, raws, nil
	}
	err = json.Unmarshal(pt, &raws)
	return nil, raws, err
}

func fastSealed(s string) (map[string]string, map[string]json.RawMessage, bool) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' {
		return nil, nil, false
	}
	strs := make(map[string]string, 8)
	var raws map[string]json.RawMessage
	s = s[1:]
	if s == "}" {
		return strs, nil, true
	}
	for {
		k, rest, ok := fastString(s)
		if !ok || rest == "" || rest[0] != ':' {
			return nil, nil, false
		}
		rest = rest[1:]
		if rest != "" && rest[0] == '"' {
			var v string
			if v, rest, ok = fastString(rest); !ok {
				return nil, nil, false
			}
			if _, dup := raws[k]; dup {
				return nil, nil, false // a repeated key: encoding/json keeps the last
			}
			strs[k] = v
		} else {
			n := skipValue(rest, 0)
			if n <= 0 {
				return nil, nil, false
			}
			if _, dup := strs[k]; dup {
				return nil, nil, false
			}
			if raws == nil {
				raws = make(map[string]json.RawMessage, 2)
			}
			raws[k] = json.RawMessage(rest[:n])
			rest = rest[n:]
		}
		switch {
		case rest == "}":
			return strs, raws, true
		case rest != "" && rest[0] == ',':
			s = rest[1:]
		default:
			return nil, nil, false
		}
	}
}

// skipValue returns the length of the leading compact JSON value of s (no white
// space, strings without escapes), or 0 when it is not one.
func skipValue(s string, depth int) int {
	if s == "" || depth > 16 {
		return 0
	}
	switch c := s[0]; {
	case c == '"':
		_, rest, ok := fastString(s)
		if !ok {
			return 0
		}
		return len(s) - len(rest)
	case c == '[' || c == '{':
		end := byte(']')
		if c == '{' {
			end = '}'
		}
		i := 1
		if i < len(s) && s[i] == end {
			return i + 1
		}
		for {
			if c == '{' {
				_, rest, ok := fastString(s[i:])
				if !ok || rest == "" || rest[0] != ':' {
					return 0
				}
				i = len(s) - len(rest) + 1
			}
			n := skipValue(s[i:], depth+1)
			if n == 0 {
				return 0
			}
			i += n
			if i >= len(s) {
				return 0
			}
			switch s[i] {
			case ',':
				i++
			case end:
				return i + 1
			default:
				return 0
			}
		}
	case c == 't' && strings.HasPrefix(s, "true"):
		return 4
	case c == 'f' && strings.HasPrefix(s, "false"):
		return 5
	case c == 'n' && strings.HasPrefix(s, "null"):
		return 4
	case c == '-' || (c >= '0' && c <= '9'):
		return skipNumber(s)
	}
	return 0
}

// skipNumber returns the length of the leading JSON number of s, or 0.
func skipNumber(s string) int {
	i := 0
	if s[i] == '-' {
		i++
	}
	digits := func() int {
		j := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - j
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case digits() == 0:
		return 0
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return 0
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return 0
		}
	}
	return i
}
