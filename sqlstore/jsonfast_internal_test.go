package sqlstore

import (
	"encoding/json"
	"reflect"
	"testing"

	"registrar/records"
)

var jsonSeeds = []string{
	`[]`, `["a"]`, `["a","b","c"]`, `["a", "b"]`, `["\u00e9"]`, `["a\"b"]`, `[1]`, `null`, `["a",]`, `[`, `["a"`, `"a"`,
	`[{"roleType":"primary","role":"teacher","org":"o1"}]`,
	`[{"roleType":"primary","role":"teacher","org":"o1","userProfile":"p","beginDate":"2026-01-01","endDate":"2026-06-30"},{"roleType":"secondary","role":"aide","org":"o2"}]`,
	`[{"roleType":"primary","extra":"x"}]`, `[{"role":1}]`, `[{}]`, `[{"role":"a"}{"role":"b"}]`,
	`{"birthDate":"2010-01-02","sex":"female"}`, `{"score":1.5}`, `{"score":-0.5e+3}`, `{"score":01}`, `{"a":[1,,2]}`, `{"a":[1,2,]}`,
	`{"userIds":[{"type":"LDAP","identifier":"x"}],"email":"a@b"}`, `{"a":{"b":[true,false,null]}}`, `{"a":"x","a":["y"]}`, `{"a":tru}`, `{"a":"b"}x`, `{}`, `{"a":["x"]}`, `{"a":"\n"}`,
}

// FuzzFastJSON: whenever a fast parser accepts its input, encoding/json must accept it
// and decode the same value.
func FuzzFastJSON(f *testing.F) {
	for _, s := range jsonSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, ok := fastStrings(s); ok {
			var want []string
			if err := json.Unmarshal([]byte(s), &want); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("fastStrings(%q) = %q; encoding/json: %q, %v", s, got, want, err)
			}
		}
		if got, ok := fastRoles(s); ok {
			var want []records.Role
			if err := json.Unmarshal([]byte(s), &want); err != nil || !reflect.DeepEqual(got, want) {
				t.Fatalf("fastRoles(%q) = %+v; encoding/json: %+v, %v", s, got, want, err)
			}
		}
		strs, raws, err := decodeSealedObject([]byte(s))
		var want map[string]json.RawMessage
		wantErr := json.Unmarshal([]byte(s), &want)
		if (err == nil) != (wantErr == nil) {
			t.Fatalf("decodeSealedObject(%q): %v; encoding/json: %v", s, err, wantErr)
		}
		if err != nil {
			return
		}
		if len(strs)+len(raws) != len(want) {
			t.Fatalf("decodeSealedObject(%q) = %q %q; encoding/json: %q", s, strs, raws, want)
		}
		for k, v := range strs {
			var w string
			if err := json.Unmarshal(want[k], &w); err != nil || w != v {
				t.Fatalf("decodeSealedObject(%q)[%q] = %q; encoding/json: %s", s, k, v, want[k])
			}
		}
		for k, v := range raws {
			if string(v) != string(want[k]) {
				t.Fatalf("decodeSealedObject(%q)[%q] = %s; encoding/json: %s", s, k, v, want[k])
			}
		}
	})
}

func TestFastJSONTakesTheCommonShapes(t *testing.T) {
	if _, ok := fastStrings(`["a","b"]`); !ok {
		t.Error("fastStrings refused a plain list")
	}
	if _, ok := fastRoles(jsonSeeds[13]); !ok {
		t.Error("fastRoles refused stored roles")
	}
	if strs, _, ok := fastSealed(`{"birthDate":"2010-01-02"}`); !ok || strs["birthDate"] != "2010-01-02" {
		t.Errorf("sealed object: %v %v", strs, ok)
	}
	if _, raws, ok := fastSealed(`{"userIds":[{"type":"LDAP","identifier":"x"}],"email":"a@b"}`); !ok || string(raws["userIds"]) != `[{"type":"LDAP","identifier":"x"}]` {
		t.Errorf("sealed object with a list: %q %v", raws, ok)
	}
}
