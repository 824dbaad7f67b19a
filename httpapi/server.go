// Package httpapi is registrar's HTTP surface: the OneRoster 1.2 rostering and
// gradebook REST services, the OAuth2 token endpoint, registrar's own /v1 API, and
// /healthz, /readyz, /metrics and /openapi.json.
//
// A request passes each room once, in order: request id and recovery, authentication
// (bearer token -> principal), authorization (principal -> scope, resolved once), the
// handler (parameters -> store query with the scope in its SQL), the audit event
// (durable before the reply), and the response. Errors leave as OneRoster
// imsx_StatusInfo bodies on OneRoster paths and RFC 9457 problem+json elsewhere, with
// internal details only in the log under the request id.
//
// httpapi imports the domain and the rooms' interfaces; it never sees a driver type.
package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"registrar/audit"
	"registrar/authn"
	"registrar/authz"
	"registrar/cache"
	"registrar/oneroster"
	"registrar/records"
	"registrar/sqlstore"
)

// Server serves the API.
type Server struct {
	store    *sqlstore.Store
	auth     *authn.Authenticator
	log      *slog.Logger
	loc      *time.Location
	baseURL  string
	maxBody  int64
	metrics  *metrics
	mux      *http.ServeMux
	routes   []*route
	ready    atomic.Bool
	now      func() time.Time
	jwks     []byte
	cache    cache.Cache   // nil: no cache
	scopes   *cache.Scopes // scopes through the cache; nil without one
	Importer Importer
	Students Students // documents and deletion certificates (students.go); set by main
}

// Importer runs CSV imports for POST /v1/imports (set by main when available).
type Importer interface{}

// Options configure a Server.
type Options struct {
	Store    *sqlstore.Store
	Auth     *authn.Authenticator
	Logger   *slog.Logger
	Location *time.Location
	BaseURL  string
	MaxBody  int64
	JWKS     []byte
	// Cache, when set, keeps resolved scopes (and shows in /readyz and /metrics);
	// the Authenticator is given it separately for verified tokens.
	Cache cache.Cache
}

// New builds the server and its routes.
func New(o Options) *Server {
	s := &Server{store: o.Store, auth: o.Auth, log: o.Logger, loc: o.Location, baseURL: o.BaseURL, maxBody: o.MaxBody,
		metrics: newMetrics(), mux: http.NewServeMux(), now: time.Now, jwks: o.JWKS}
	if s.loc == nil {
		s.loc = time.UTC
	}
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	if o.Cache != nil {
		s.cache = o.Cache
		s.scopes = cache.NewScopes(o.Cache, o.Store, cache.NewGenerations(changeLog(o.Store), cache.RosterEntities), 0)
		s.metrics.reg.MustRegister(cache.NewCollector(o.Cache))
	}
	s.routes = s.buildRoutes()
	for _, r := range s.routes {
		s.mux.Handle(r.method+" "+r.pattern, s.wrap(r))
	}
	// Paths no route serves: 405 with Allow when the path exists for other methods,
	// else 404; under the OneRoster bases the body is imsx_StatusInfo.
	notFound := func(oneRoster bool) *route {
		return &route{pattern: "/", op: "notFound", public: true, noAudit: true, oneRoster: oneRoster, h: func(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
			if allow := s.allowed(r); len(allow) > 0 {
				w.Header().Set("Allow", strings.Join(allow, ", "))
				s.fail(w, r, rc, &records.Error{Code: records.MethodNotAllowed, CodeMinor: "invaliddata", Message: r.Method + " is not allowed on this path; allowed: " + strings.Join(allow, ", ")})
				return
			}
			s.fail(w, r, rc, &records.Error{Code: records.NotFound, CodeMinor: "unknownobject", Message: "no such path: " + clipPath(r.URL.Path)})
		}}
	}
	s.mux.Handle("/", s.wrap(notFound(false)))
	s.mux.Handle(RosteringBase+"/", s.wrap(notFound(true)))
	s.mux.Handle(GradebookBase+"/", s.wrap(notFound(true)))
	s.ready.Store(true)
	return s
}

// allowed lists the methods that have a route for r's path.
func (s *Server) allowed(r *http.Request) []string {
	var out []string
	for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, pattern := s.mux.Handler(r2); pattern != "" && pattern != "/" && pattern != RosteringBase+"/" && pattern != GradebookBase+"/" {
			out = append(out, m)
		}
	}
	return out
}

// Handler returns the root handler.
func (s *Server) Handler() http.Handler { return s.mux }

// SetReady marks the server ready or not (readiness drops during shutdown).
func (s *Server) SetReady(v bool) { s.ready.Store(v) }

// Routes lists every route as "METHOD pattern" (tests derive their lists from it).
func (s *Server) Routes() []RouteInfo {
	out := make([]RouteInfo, 0, len(s.routes))
	for _, r := range s.routes {
		out = append(out, RouteInfo{Method: r.method, Pattern: r.pattern, Op: r.op, Public: r.public, Audited: !r.public && !r.noAudit})
	}
	return out
}

// RouteInfo describes one route.
type RouteInfo struct {
	Method, Pattern, Op string
	Public              bool // no authentication
	Audited             bool
}

// reqCtx is the per-request state that passes from room to room.
type reqCtx struct {
	id      string
	route   *route
	start   time.Time
	p       *authz.Principal
	scope   *authz.Scope
	event   audit.Event
	audited bool
}

type route struct {
	method, pattern, op string
	public              bool  // no authentication (health, token endpoint)
	noAudit             bool  // touches no student data (health, metrics, docs)
	oneRoster           bool  // errors as imsx_StatusInfo
	maxBody             int64 // body limit of this route when not the server's (package uploads)
	h                   func(http.ResponseWriter, *http.Request, *reqCtx)
}

type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += n
	return n, err
}

var reqSeq atomic.Uint64

func newRequestID() string {
	return strconv.FormatInt(time.Now().UnixMilli(), 36) + "-" + strconv.FormatUint(reqSeq.Add(1), 36)
}

// wrap is the chain every route passes: request id, recovery, authentication,
// metrics and the access log.
func (s *Server) wrap(rt *route) http.Handler {
	params := wildcards(rt.pattern)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := &reqCtx{id: newRequestID(), route: rt, start: s.now()}
		sw := &statusWriter{ResponseWriter: w}
		sw.Header().Set("X-Request-Id", rc.id)
		defer func() {
			if p := recover(); p != nil {
				s.log.Error("panic", "request_id", rc.id, "route", rt.pattern, "panic", fmt.Sprint(p))
				if sw.status == 0 {
					s.fail(sw, r, rc, &records.Error{Code: records.Internal, Message: "internal error"})
				}
			}
			d := s.now().Sub(rc.start)
			s.metrics.observe(rt.method, rt.pattern, sw.status, d)
			s.log.LogAttrs(r.Context(), slog.LevelInfo, "request", slog.String("request_id", rc.id), slog.String("method", r.Method),
				slog.String("route", rt.pattern), slog.Int("status", sw.status), slog.Float64("duration_ms", float64(d.Microseconds())/1000),
				slog.Int("bytes", sw.bytes), slog.String("principal", principalLabel(rc.p)))
		}()
		if !rt.public {
			p, err := s.auth.Authenticate(r.Context(), bearer(r))
			if err != nil {
				var ue *authn.ErrUnauthenticated
				if errors.As(err, &ue) {
					s.log.Info("unauthenticated", "request_id", rc.id, "reason", ue.Reason)
					sw.Header().Set("WWW-Authenticate", `Bearer realm="registrar", error="invalid_token"`)
					s.fail(sw, r, rc, &records.Error{Code: records.Unauthorized, CodeMinor: "unauthorisedrequest", Message: "a valid bearer token is required"})
					return
				}
				s.fail(sw, r, rc, err)
				return
			}
			rc.p = p
			scope, err := s.resolve(r.Context(), p, s.now().In(s.loc))
			if err != nil {
				s.fail(sw, r, rc, err)
				return
			}
			rc.scope = scope
			rc.event = audit.Event{PrincipalKind: p.Kind, PrincipalID: p.ID, ClientID: p.ClientID, Route: rt.method + " " + rt.pattern,
				LegalBasis: p.LegalBasis, Purpose: p.Purpose, RequestID: rc.id, Source: sourceAddr(r), Action: rt.op}
			if scope.Denied() {
				// A disabled, departed or role-less person: the token is no longer a
				// credential, as for a revoked client. The attempt is audited.
				s.log.Info("unauthenticated", "request_id", rc.id, "reason", "the user is disabled, inactive or has no role")
				sw.Header().Set("WWW-Authenticate", `Bearer realm="registrar", error="invalid_token"`)
				s.fail(sw, r, rc, &records.Error{Code: records.Unauthorized, CodeMinor: "unauthorisedrequest", Message: "a valid bearer token is required"})
				return
			}
			if p.Kind == "client" {
				// 34 CFR 99.33: the recipient may not re-disclose.
				sw.Header().Set("X-Disclosure-Purpose", p.Purpose)
				sw.Header().Set("X-Redisclosure-Notice", "Education records disclosed under FERPA (34 CFR Part 99); they may not be re-disclosed without consent except as 34 CFR 99.33 allows.")
			}
		}
		for _, p := range params {
			if err := textParam(p.label, r.PathValue(p.name)); err != nil {
				s.fail(sw, r, rc, err)
				return
			}
		}
		limit := s.maxBody
		if rt.maxBody > 0 {
			limit = rt.maxBody
		}
		r.Body = http.MaxBytesReader(sw, r.Body, limit)
		rt.h(sw, r, rc)
	})
}

// textParam refuses a path or query value that no stored id or name can equal
// (records.ValidText): refused before any query, alike on both engines.
func textParam(name, v string) error {
	if err := records.ValidText(v); err != nil {
		return &records.Error{Code: records.Invalid, Field: name, Message: fmt.Sprintf("%s %v", name, err)}
	}
	return nil
}

// wildcard is one of a route's path wildcards: its name ("id" for "{id}", "rest" for
// "{rest...}") and what a refusal of its value calls it, made once per route so that
// checking a request's path values allocates nothing.
type wildcard struct{ name, label string }

// wildcards lists pattern's path wildcards.
func wildcards(pattern string) []wildcard {
	var out []wildcard
	for {
		i := strings.IndexByte(pattern, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(pattern[i:], '}')
		if j < 0 {
			return out
		}
		if name := strings.TrimSuffix(pattern[i+1:i+j], "..."); name != "" {
			out = append(out, wildcard{name, name + " in the path"})
		}
		pattern = pattern[i+j+1:]
	}
}

// resolve is authz.Resolve, through the cache when there is one.
func (s *Server) resolve(ctx context.Context, p *authz.Principal, today time.Time) (*authz.Scope, error) {
	if s.scopes != nil {
		return s.scopes.Resolve(ctx, p, today)
	}
	return authz.Resolve(ctx, s.store, p, today)
}

// changeLog reads the store's change log for the cache's roster generation.
func changeLog(st *sqlstore.Store) cache.ChangeLog {
	return func(ctx context.Context, after int64, limit int) ([]cache.Change, error) {
		cs, err := st.ChangesAfter(ctx, after, limit)
		out := make([]cache.Change, len(cs))
		for i, c := range cs {
			out[i] = cache.Change{ID: c.ID, Entity: c.Entity}
		}
		return out, err
	}
}

func principalLabel(p *authz.Principal) string {
	if p == nil {
		return ""
	}
	return p.Kind + ":" + p.ID
}

func bearer(r *http.Request) string {
	h := r.Header.Get("Authorization")
	if len(h) > 7 && strings.EqualFold(h[:7], "bearer ") {
		return strings.TrimSpace(h[7:])
	}
	return ""
}

func sourceAddr(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func clipPath(p string) string {
	if len(p) > 200 {
		p = p[:200] + "..."
	}
	return strings.ToValidUTF8(p, "?")
}

var statusOf = map[records.Code]int{
	records.Invalid:          http.StatusBadRequest,
	records.NotFound:         http.StatusNotFound,
	records.Conflict:         http.StatusConflict,
	records.Unauthorized:     http.StatusUnauthorized,
	records.MethodNotAllowed: http.StatusMethodNotAllowed,
	records.Forbidden:        http.StatusForbidden,
	records.TooLarge:         http.StatusRequestEntityTooLarge,
	records.Unavailable:      http.StatusServiceUnavailable,
	records.Internal:         http.StatusInternalServerError,
}

var outcomeOf = map[records.Code]string{
	records.Invalid: audit.Invalid, records.NotFound: audit.NotFound, records.Forbidden: audit.Denied,
	records.Unauthorized: audit.Denied, records.Conflict: audit.Invalid, records.TooLarge: audit.Invalid,
}

// asRecordsError maps any error to the one coded type, hiding internals.
func asRecordsError(err error) *records.Error {
	var re *records.Error
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &re):
		return re
	case errors.As(err, &mbe):
		return &records.Error{Code: records.TooLarge, CodeMinor: "invaliddata", Message: fmt.Sprintf("the request body is larger than %d bytes", mbe.Limit)}
	case errors.Is(err, context.Canceled):
		return &records.Error{Code: records.Unavailable, Message: "the request was cancelled", Err: err}
	case errors.Is(err, context.DeadlineExceeded):
		return &records.Error{Code: records.Unavailable, Message: "the request timed out", Err: err}
	}
	return &records.Error{Code: records.Internal, Message: "internal error", Err: err}
}

// fail writes an error response, audits a denied or failed access when a principal
// is known, and logs internals under the request id.
func (s *Server) fail(w http.ResponseWriter, r *http.Request, rc *reqCtx, err error) {
	re := asRecordsError(err)
	status := statusOf[re.Code]
	if status == 0 {
		status = http.StatusInternalServerError
	}
	msg := re.Message
	if re.Code == records.Internal {
		s.log.Error("internal error", "request_id", rc.id, "route", rc.route.pattern, "err", err)
		msg = "internal error (request id " + rc.id + ")"
	} else if re.Err != nil {
		s.log.Warn("request failed", "request_id", rc.id, "route", rc.route.pattern, "code", string(re.Code), "err", re.Err)
	}
	if re.Code == records.Unavailable {
		w.Header().Set("Retry-After", "2")
	}
	if rc.p != nil && !rc.audited && !rc.route.noAudit {
		ev := rc.event
		ev.Outcome, ev.Status, ev.Detail = outcomeOf[re.Code], status, string(re.Code)
		if ev.Outcome == "" {
			ev.Outcome = audit.Failed
		}
		rc.audited = true
		if aerr := s.store.Audit(context.WithoutCancel(r.Context()), ev); aerr != nil {
			s.log.Error("audit of a failed request could not be written", "request_id", rc.id, "err", aerr)
		}
	}
	if rc.route.oneRoster {
		minor := re.CodeMinor
		if minor == "" {
			minor = map[records.Code]string{records.NotFound: "unknownobject", records.Unauthorized: "unauthorisedrequest", records.Forbidden: "forbidden",
				records.Unavailable: "server_busy", records.Internal: "internal_server_error"}[re.Code]
			if minor == "" {
				minor = "invaliddata"
			}
		}
		writeJSON(w, status, oneroster.Failure(minor, msg))
		return
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	body := map[string]any{"type": "about:blank", "title": http.StatusText(status), "status": status, "detail": msg, "instance": rc.id}
	if len(re.Details) > 0 {
		body["errors"] = re.Details
	}
	_ = json.NewEncoder(w).Encode(body) // the client went away: nothing to do
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v) // the client went away: nothing to do
}

// commitAudit makes the request's audit event durable; the response may be written
// only after it returns nil.
func (s *Server) commitAudit(r *http.Request, rc *reqCtx, status int) error {
	ev := rc.event
	ev.Outcome, ev.Status = audit.OK, status
	rc.audited = true
	return s.auditRead(context.WithoutCancel(r.Context()), rc, ev) // with its record of disclosure (audit.go)
}

// SetClock replaces the server's clock (tests: eligibility depends on today's date).
func (s *Server) SetClock(now func() time.Time) { s.now = now }
