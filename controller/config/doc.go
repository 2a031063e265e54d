// Package config reads the controller's one YAML file: the device ID, the
// key files, the MQTT broker (credentials and TLS), the I/O board (profile
// and serial port), the modem port, the journal file, the beacon backend and
// window, and the machines with their kind, wiring, prices and slots.
// Validation errors name the field ("machines[1].washer.coin: no output
// relay9 on board generic-relay-8"); unknown fields are errors, so a typo
// never silently drops a setting. Key files must be mode 0600 (or 0400):
// LoadSecrets refuses to start otherwise and says which file and how to fix
// it. WriteSecret and WriteFile write atomically (temporary file, fsync,
// rename, fsync of the directory), as provisioning does.
//
// A complete example is controller/testdata/controller.example.yaml.
// `controller import-bundle` (package controller/wiring) writes a ready
// file for a device from the provisioning bundle `cloud device add` makes
// and the board's wiring.
package config
