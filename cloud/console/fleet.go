package console

import "net/http"

// fleetRoutes registers the console's pages of the fleet: devices and machines, live on m.
func (c *Console) fleetRoutes(m *http.ServeMux) {}
