package httpapi

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"

	"registrar/authn"
	"registrar/oneroster"
)

func (s *Server) buildRoutes() []*route {
	var routes []*route
	for i := range oneRosterRoutes {
		routes = append(routes, s.oneRosterRoute(&oneRosterRoutes[i]))
	}
	routes = append(routes,
		&route{method: "POST", pattern: "/oauth/token", op: "token", public: true, noAudit: true, h: s.token},
		&route{method: "GET", pattern: "/.well-known/jwks.json", op: "jwks", public: true, noAudit: true, h: s.jwksHandler},
		&route{method: "GET", pattern: "/healthz", op: "healthz", public: true, noAudit: true, h: s.healthz},
		&route{method: "GET", pattern: "/readyz", op: "readyz", public: true, noAudit: true, h: s.readyz},
		&route{method: "GET", pattern: "/metrics", op: "metrics", public: true, noAudit: true, h: func(w http.ResponseWriter, r *http.Request, _ *reqCtx) {
			s.metrics.handler().ServeHTTP(w, r)
		}},
		&route{method: "GET", pattern: "/openapi.json", op: "openapi", public: true, noAudit: true, h: s.openapi},
	)
	routes = append(routes, s.v1Routes()...)
	return routes
}

func (s *Server) healthz(w http.ResponseWriter, _ *http.Request, _ *reqCtx) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request, _ *reqCtx) {
	checks := map[string]string{}
	status := http.StatusOK
	if !s.ready.Load() {
		checks["server"] = "shutting down"
		status = http.StatusServiceUnavailable
	} else {
		checks["server"] = "ok"
	}
	if err := s.store.Ping(r.Context()); err != nil {
		s.log.Warn("readiness: database", "err", err)
		checks["database"] = "unavailable"
		status = http.StatusServiceUnavailable
	} else {
		checks["database"] = "ok"
	}
	if s.cache != nil {
		// The service answers from the database without its cache: a failing cache
		// shows here (and in registrar_cache_degraded) but does not take the
		// instance out of rotation.
		checks["cache"] = "ok"
		if err := s.cache.Ping(r.Context()); err != nil {
			checks["cache"] = "degraded"
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	if status != http.StatusOK {
		w.Header().Set("Retry-After", "2") // as every 503 of the server
	}
	writeJSON(w, status, map[string]any{"status": map[bool]string{true: "ready", false: "not ready"}[status == http.StatusOK], "checks": checks})
}

func (s *Server) jwksHandler(w http.ResponseWriter, _ *http.Request, _ *reqCtx) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(s.jwks) // the client went away: nothing to do
}

// token is the OAuth2 token endpoint (RFC 6749 section 4.4: client credentials).
func (s *Server) token(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	oauthErr := func(e *authn.OAuthError) {
		if e.Status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Basic realm="registrar"`)
		}
		writeJSON(w, e.Status, map[string]string{"error": e.Code, "error_description": e.Description})
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/x-www-form-urlencoded") {
		oauthErr(&authn.OAuthError{Code: "invalid_request", Description: "the body must be application/x-www-form-urlencoded", Status: 400})
		return
	}
	if err := r.ParseForm(); err != nil {
		oauthErr(&authn.OAuthError{Code: "invalid_request", Description: "the form does not parse", Status: 400})
		return
	}
	if gt := r.PostForm.Get("grant_type"); gt != "client_credentials" {
		oauthErr(&authn.OAuthError{Code: "unsupported_grant_type", Description: "only client_credentials is supported", Status: 400})
		return
	}
	id, secret, basic := r.BasicAuth()
	if basic {
		// RFC 6749 section 2.3.1: the credentials are form-encoded before Basic.
		if u, err := url.QueryUnescape(id); err == nil {
			id = u
		}
		if u, err := url.QueryUnescape(secret); err == nil {
			secret = u
		}
		if r.PostForm.Get("client_secret") != "" {
			oauthErr(&authn.OAuthError{Code: "invalid_request", Description: "use one client authentication method, not two", Status: 400})
			return
		}
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	tok, err := s.auth.IssueClientToken(r.Context(), id, secret, r.PostForm.Get("scope"))
	var oe *authn.OAuthError
	if errors.As(err, &oe) {
		s.log.Info("token refused", "request_id", rc.id, "error", oe.Code)
		oauthErr(oe)
		return
	}
	if err != nil {
		s.fail(w, r, rc, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"access_token": tok.AccessToken, "token_type": "Bearer", "expires_in": tok.ExpiresIn, "scope": tok.Scope})
}

// openapi serves one OpenAPI 3 document covering every route: the OneRoster
// operations from the official documents, and registrar's own.
func (s *Server) openapi(w http.ResponseWriter, r *http.Request, _ *reqCtx) {
	doc, err := s.openapiDoc()
	if err != nil {
		s.log.Error("openapi", "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writeJSON(w, http.StatusOK, doc)
}

func (s *Server) openapiDoc() (map[string]any, error) {
	paths := map[string]any{}
	schemas := map[string]any{}
	for _, src := range []struct {
		base string
		doc  []byte
	}{{RosteringBase, oneroster.RosteringOpenAPI}, {GradebookBase, oneroster.GradebookOpenAPI}} {
		var d struct {
			Paths      map[string]any `json:"paths"`
			Components struct {
				Schemas map[string]any `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(src.doc, &d); err != nil {
			return nil, err
		}
		for p, v := range d.Paths {
			paths[src.base+p] = v
		}
		for k, v := range d.Components.Schemas {
			schemas[k] = v
		}
	}
	var own []string
	for _, rt := range s.routes {
		if rt.oneRoster {
			continue
		}
		own = append(own, rt.method+" "+rt.pattern)
	}
	sort.Strings(own)
	for _, mp := range own {
		method, pattern, _ := strings.Cut(mp, " ")
		item, _ := paths[pattern].(map[string]any)
		if item == nil {
			item = map[string]any{}
			paths[pattern] = item
		}
		op := map[string]any{"summary": pattern, "responses": map[string]any{"default": map[string]any{"description": "JSON, or application/problem+json on error"}}}
		var params []any
		for _, seg := range strings.Split(pattern, "/") {
			if strings.HasPrefix(seg, "{") {
				params = append(params, map[string]any{"name": strings.Trim(seg, "{}"), "in": "path", "required": true, "schema": map[string]string{"type": "string"}})
			}
		}
		if params != nil {
			op["parameters"] = params
		}
		item[strings.ToLower(method)] = op
	}
	return map[string]any{
		"openapi": "3.0.3",
		"info":    map[string]any{"title": "registrar", "version": "1", "description": "OneRoster 1.2 rostering and gradebook, and registrar's FERPA API."},
		"paths":   paths,
		"components": map[string]any{
			"schemas": schemas,
			"securitySchemes": map[string]any{
				"OAuth2CC": map[string]any{"type": "oauth2", "flows": map[string]any{"clientCredentials": map[string]any{"tokenUrl": "/oauth/token", "scopes": map[string]string{}}}},
				"bearer":   map[string]any{"type": "http", "scheme": "bearer", "bearerFormat": "JWT"},
			},
		},
	}, nil
}

// v1Routes are registrar's own API (FERPA workflows, imports, audit), one function per
// feature, each in its own file.
func (s *Server) v1Routes() []*route {
	var out []*route
	out = append(out, s.meRoutes()...)
	out = append(out, s.importRoutes()...)
	out = append(out, s.auditRoutes()...)
	out = append(out, s.studentRoutes()...)
	out = append(out, s.changesRoutes()...)
	out = append(out, s.caseloadRoutes()...)
	return out
}

// meRoutes: a who-am-i that shows a caller its own principal and scope.
func (s *Server) meRoutes() []*route {
	return []*route{
		{method: "GET", pattern: "/v1/me", op: "me", noAudit: true, h: func(w http.ResponseWriter, r *http.Request, rc *reqCtx) {
			writeJSON(w, http.StatusOK, map[string]any{
				"kind": rc.p.Kind, "id": rc.p.ID, "scopes": rc.p.Scopes, "legalBasis": rc.p.LegalBasis,
				"unrestricted": rc.scope.Unrestricted, "orgs": rc.scope.Orgs, "students": len(rc.scope.Students), "caseload": len(rc.scope.Caseload),
			})
		}},
	}
}
