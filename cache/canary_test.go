package cache_test

import (
	"bytes"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"registrar/authz"
	"registrar/cache"
	"registrar/internal/testdistrict"
	"registrar/records"
	"registrar/vault"
)

// TestRedisKeyspaceHoldsNoPlaintext extends the PII canary test (invariant 2) to
// the Redis keyspace. Every sensitive value of the test district contains
// testdistrict.Canary. After a workload of reads by every kind of principal,
// blind-index filters, writes with sensitive values, refused requests carrying the
// canary, and roster writes that move the generation, every key and every value in
// Redis is read: none may contain the canary. Nor may any contain a sourcedId of
// the district (key names are keyed hashes, values are ciphertext), and every key
// must be in the namespace with a TTL.
func TestRedisKeyspaceHoldsNoPlaintext(t *testing.T) {
	t.Parallel()
	srv := startRedis(t) // its own server: the scan sees exactly this workload
	h := newHarness(t, wiredRedis(t, cache.RedisOptions{Addr: srv.Addr, Timeout: time.Second}, 0))
	raw := dialRaw(t, srv.Addr)
	canary := []byte(testdistrict.Canary)

	// Control: a plaintext value in the keyspace is found by the scan.
	raw.do(t, "SET", cache.Namespace+"control", "leaked "+testdistrict.Canary, "PX", "60000")
	if hits := canaryHits(scanRedis(t, raw), canary); len(hits) != 1 {
		t.Fatalf("the scan found %d hits for a planted plaintext value, want 1", len(hits))
	}
	raw.do(t, "DEL", cache.Namespace+"control")

	requests := canaryWorkload(t, h)
	keys := scanRedis(t, raw)
	if len(keys) < 10 {
		t.Fatalf("only %d keys after %d requests: the workload did not reach the cache", len(keys), requests)
	}
	kinds := map[string]int{}
	for _, kv := range keys {
		rest, ok := strings.CutPrefix(kv.key, cache.Namespace)
		if !ok {
			t.Errorf("key %q is outside %s", kv.key, cache.Namespace)
		}
		kinds[strings.SplitN(rest, ":", 2)[0]]++
		if kv.pttl <= 0 {
			t.Errorf("key %q has no TTL (PTTL %d)", kv.key, kv.pttl)
		}
	}
	if kinds["tok"] == 0 || kinds["scope"] == 0 {
		t.Errorf("kinds of keys %v: want tok and scope", kinds)
	}
	for _, hit := range canaryHits(keys, canary) {
		t.Errorf("plaintext of a sensitive value in Redis: %s", hit)
	}
	for _, hit := range idHits(keys) {
		t.Errorf("a sourcedId in Redis: %s", hit)
	}
	t.Logf("%d requests; %d keys scanned by kind %v", requests, len(keys), kinds)
}

// TestKeyspaceScanSeesUnsealedIDs is the control for the sourcedId check: the same
// workload over a Redis cache that is not sealed leaves ids in the keyspace.
func TestKeyspaceScanSeesUnsealedIDs(t *testing.T) {
	t.Parallel()
	srv := startRedis(t)
	h := newHarness(t, func(*vault.Vault) cache.Cache { return newRedis(t, cache.RedisOptions{Addr: srv.Addr}) })
	canaryWorkload(t, h)
	if hits := idHits(scanRedis(t, dialRaw(t, srv.Addr))); len(hits) == 0 {
		t.Error("an unsealed cache left no sourcedId in Redis: the check in TestRedisKeyspaceHoldsNoPlaintext could not fail")
	}
}

// idHits lists the entries that contain a sourcedId of the test district.
func idHits(keys []redisEntry) []string {
	var hits []string
	for _, eo := range testdistrict.Objects() {
		hits = append(hits, canaryHits(keys, []byte(eo.O.ID()))...)
	}
	return hits
}

// canaryWorkload reads as every kind of principal, filters on blind indexes, writes
// sensitive values, sends refused requests carrying the canary, and writes the
// roster so that the generation moves; it returns the number of requests.
func canaryWorkload(t *testing.T, h *harness) int {
	t.Helper()
	_, vendor := h.client([]string{authz.RosterReadonly, authz.RosterDemographics, authz.GradebookReadonly, authz.GradebookCreatePut})
	_, districtVendor := h.client([]string{authz.RosterReadonly, authz.RosterDemographics, authz.GradebookReadonly}, testdistrict.District)
	people := map[string]string{}
	for _, id := range []string{testdistrict.Admin, testdistrict.PrincipalA, testdistrict.Counselor, testdistrict.TeacherA, testdistrict.TeacherB,
		testdistrict.Guardian, testdistrict.Guardian2, testdistrict.Minor, testdistrict.Eligible, testdistrict.Disabled} {
		people[id] = h.user(id)
	}
	minorEmail := testdistrict.Minor + "." + testdistrict.Canary + "@example.org"
	paths := []string{
		roster + "/users?limit=100",
		roster + "/students/" + testdistrict.Minor,
		roster + "/students/" + testdistrict.Eligible,
		roster + "/demographics/" + testdistrict.Minor,
		roster + "/demographics?fields=birthDate,cityOfBirth",
		roster + "/classes/" + testdistrict.ClassMathA + "/students",
		roster + "/users?filter=" + url.QueryEscape("email='"+minorEmail+"'"),
		grades + "/results",
		grades + "/results/" + testdistrict.ResultMinA,
		// Refused: their inputs carry the canary.
		roster + "/users?filter=" + url.QueryEscape("email~'"+testdistrict.Canary+"'"),
		roster + "/demographics?filter=" + url.QueryEscape("cityOfBirth='Springfield "+testdistrict.Canary+"'"),
	}
	tokens := []string{vendor, districtVendor}
	for _, tok := range people {
		tokens = append(tokens, tok)
	}
	requests := 0
	round := func() {
		for _, tok := range tokens {
			for _, p := range paths {
				h.do("GET", p, tok, "")
				requests++
			}
		}
	}
	round()
	putResult := func(id, body string) {
		r := h.do("PUT", grades+"/results/"+id, vendor, `{"result":{"sourcedId":"`+id+`","status":"active","lineItem":{"sourcedId":"`+testdistrict.LineItemA+`"},`+
			`"student":{"sourcedId":"`+testdistrict.Minor+`"},"scoreDate":"2026-09-10",`+body+`}}`)
		if r.status >= 500 {
			t.Errorf("PUT result: %d: %s", r.status, r.body)
		}
	}
	putResult("result-canary-1", `"scoreStatus":"fully graded","score":88,"comment":"new `+testdistrict.Canary+`"`)
	putResult("result-canary-2", `"scoreStatus":"`+testdistrict.Canary+`"`)
	// Roster writes with sensitive values move the generation: scopes are cached anew.
	h.put(records.User, testdistrict.Minor, func(o records.Object) { o["phone"] = "555-0199-" + testdistrict.Canary })
	h.put(records.Demographics, testdistrict.Minor, func(o records.Object) { o["cityOfBirth"] = "Shelbyville " + testdistrict.Canary })
	round()
	return requests
}

type redisEntry struct {
	key   string
	typ   string
	value []byte // every member of a non-string value, concatenated
	pttl  int64
}

// scanRedis reads every key of the server with SCAN, and each key's value and TTL.
func scanRedis(t *testing.T, raw *rawRedis) []redisEntry {
	t.Helper()
	var out []redisEntry
	cursor := "0"
	for {
		reply, ok := raw.do(t, "SCAN", cursor, "COUNT", "1000").([]any)
		if !ok || len(reply) != 2 {
			t.Fatalf("SCAN reply %v", reply)
		}
		cursor = string(reply[0].([]byte))
		for _, k := range reply[1].([]any) {
			key := string(k.([]byte))
			e := redisEntry{key: key, typ: fmt.Sprint(raw.do(t, "TYPE", key))}
			switch e.typ {
			case "string":
				e.value, _ = raw.do(t, "GET", key).([]byte)
			case "hash":
				e.value = flatten(raw.do(t, "HGETALL", key))
			case "list":
				e.value = flatten(raw.do(t, "LRANGE", key, "0", "-1"))
			case "set":
				e.value = flatten(raw.do(t, "SMEMBERS", key))
			case "zset":
				e.value = flatten(raw.do(t, "ZRANGE", key, "0", "-1"))
			case "none": // expired between SCAN and TYPE
				continue
			default:
				t.Errorf("key %q of type %s: the scan cannot read it", key, e.typ)
			}
			e.pttl, _ = raw.do(t, "PTTL", key).(int64)
			out = append(out, e)
		}
		if cursor == "0" {
			return out
		}
	}
}

func flatten(v any) []byte {
	var b bytes.Buffer
	if l, ok := v.([]any); ok {
		for _, x := range l {
			if s, ok := x.([]byte); ok {
				b.Write(s)
				b.WriteByte(0)
			}
		}
	}
	return b.Bytes()
}

// canaryHits lists the keys whose name or value contains needle.
func canaryHits(entries []redisEntry, needle []byte) []string {
	var hits []string
	for _, e := range entries {
		if bytes.Contains([]byte(e.key), needle) || bytes.Contains(e.value, needle) {
			i := max(0, bytes.Index(e.value, needle))
			hits = append(hits, fmt.Sprintf("%s: ...%q...", e.key, e.value[max(0, i-40):min(len(e.value), i+40)]))
		}
	}
	return hits
}
