// Package provision is the provisioning bundle: everything the cloud knows
// about a new board and the board needs to join the fleet, as one JSON
// document. `cloud device add` writes it; the controller's
// `import-bundle` turns it, together with the board's wiring (which the
// cloud does not know: board profile, register numbers, K-factors), into
// the controller's configuration and key files.
//
// The bundle holds the board's secrets (identity key, device signing key,
// broker password): it is written with mode 0600, carried to the board
// once, and should be deleted after the import.
//
//	{
//	  "version": 1,
//	  "device_id": "wash-01",
//	  "operator_id": "op_…",
//	  "identity_key": "<32 hex digits>",
//	  "device_key": "<64 hex digits: ed25519 seed>",
//	  "k": 10,
//	  "cloud_public_keys": ["<64 hex digits>"],
//	  "mqtt": {"url": "ssl://broker.example:8883", "username": "wash-01", "password": "…", "ca_pem": "-----BEGIN CERTIFICATE-----…"},
//	  "machines": [{"id": "washer1", "kind": "washer", "name": "Washer 1", "unit": "cycle",
//	                "currency": "EUR", "price": {"minor": 350, "per": 1}}]
//	}
//
// Decode is strict: unknown fields, a wrong version, a missing or
// malformed key, an invalid ID, price or currency are each a clear error
// naming the field. The package imports only the standard library and
// app-protocol.
package provision
