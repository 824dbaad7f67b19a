package httpapi

// auditRoutes: the audit trail and the record of disclosures (issue 6).
func (s *Server) auditRoutes() []*route { return nil }
