package console

import "net/http"

// userRoutes registers the users page (owner only): accounts, roles,
// disable and enable.
func (c *Console) userRoutes(m *http.ServeMux) {}
