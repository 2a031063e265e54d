// Package provision registers boards with the cloud and writes what they
// and the site broker need: `cloud device add` produces a provisioning
// bundle (the contract in app-protocol/provision: device ID, keys, broker
// URL and credentials, CA, machines with kinds, units and prices), and the
// controller's `import-bundle` turns that bundle and the board's wiring
// into its own configuration. The cloud knows no board profiles, register
// numbers or K-factors.
//
// # Adding a device
//
// [Provisioner.AddDevice] first checks everything it can without writing:
// the request (ID, kind, prices, slots, broker URL, CA), the Mosquitto
// options (group, certificate files), that the device does not exist (a
// database that cannot answer is an error, never "absent"), and that the
// output directory does not exist or is empty. Then it writes the bundle
// (mode 0600) to a temporary file in that directory and syncs it,
// registers the device in one transaction, and renames the file to
// bundle.json. A failed registration removes the file (and the directory
// it made); a process that dies after the registration leaves the bundle
// under its temporary name, and running the same command again finds it,
// checks it belongs to the registered device, and completes the rename
// ([Result.Recovered]); one that dies before the registration leaves a
// temporary bundle for an unregistered device, which the next add into
// that directory removes. So a failure leaves neither a device without
// its bundle nor a bundle for an unregistered device.
//
// # Site broker
//
// With [Mosquitto] options the password file, ACL and mosquitto.conf are
// rewritten from the store after every change ([Provisioner.WriteMosquitto];
// AddDevice, DisableDevice and OperatorBrokerAccount call it):
// every active device, the cloud's account, and each operator's read-only
// account with read on its own devices' state, telemetry and evt topics.
// The files are written atomically, 0640 in the broker's group, so the
// broker re-reading them on SIGHUP keeps admitting the cloud and every
// device; with a PID file the broker is sent SIGHUP afterwards.
// mosquitto.conf has a TLS listener on the port of the devices' broker URL
// (certificate, key and CA under the directory unless named), persistence,
// the run-as user, and at most a loopback plaintext listener for a cloud
// on the same host.
//
// # Operator broker accounts
//
// [Provisioner.OperatorBrokerAccount] makes (or replaces) an operator's
// read-only broker account: username "_" + operator id, a fresh random
// password returned once and stored only as its "$7$" hash (cloud/store,
// table broker_accounts). The embedded broker checks it through the store;
// the Mosquitto ACL lists the operator's devices and follows devices added
// later.
package provision
