package console

import "net/http"

// auditRoutes registers the audit log page and its CSV export (owner
// only).
func (c *Console) auditRoutes(m *http.ServeMux) {}
