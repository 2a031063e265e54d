package console

import "net/http"

// opsRoutes registers the console's pages of remote operations, provisioning and inventory on m.
func (c *Console) opsRoutes(m *http.ServeMux) {}
