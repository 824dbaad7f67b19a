package httpapi

// studentRoutes: per-student documents and purge (issue 5).
func (s *Server) studentRoutes() []*route { return nil }
