package console

import "net/http"

// moneyRoutes registers the console's pages of sessions, revenue, exports and refunds on m.
func (c *Console) moneyRoutes(m *http.ServeMux) {}
