// Package wiring is the board side of provisioning: it turns a
// provisioning bundle (app-protocol/provision, written by `cloud device
// add`: device ID, keys, broker URL and credentials, machines with kinds,
// units and prices) plus the board's wiring (this package's YAML file:
// board profile, serial port, and which outputs, inputs and counters each
// machine is wired to) into the controller's config (controller.yaml, see
// package config) and its key files. The cloud knows prices; only the
// board knows register names and K-factors.
//
// A wiring file:
//
//	profile: generic-relay-8      # built-in board profile or a YAML file (relative to this file)
//	port: /dev/ttyUSB0            # the I/O board's serial port
//	journal: /var/lib/beaconvend/journal.db   # default
//	modem: {port: /dev/ttyUSB2}   # optional
//	beacon: {hci_device: 0, name: Laundry Main St}   # optional
//	machines:                     # optional: one entry per machine ID of the bundle
//	  washer1: {coin: relay1, running: in1, pulses_per_credit: 4}
//	  washer2: {coin: relay2, running: in2}
//
// A water machine (on a board with counters, e.g. pulse-io-4) is wired as
// {valve: out1, flow: count1, k_factor: "450.5", no_flow: 5s}, a vending
// machine as {drop: in16, drop_counter: count1 (optional: a counter
// counting the drop input), slots: {A1: relay1, A2: relay2}} (slot ID →
// motor output). controller/testdata/wiring.example.yaml is annotated.
//
// Without a machines section the bundle's machines are wired in order onto
// the profile's channels, as the earlier all-in-one `cloud device add` did:
// water takes the next free output (valve) and counter (flow meter, K-factor
// 450 pulses per litre); a washer or dryer the next free output (coin) and
// input (running); a vending machine takes as drop sensor the first free
// input whose counter (same position) is free when the board has counters,
// else the board's last input, and one motor output per slot, in order. So
// water on pulse-io-4 is out1/count1…, washers on generic-relay-8
// relay1/in1…, vending on generic-relay-16 in16 with relay1…, on pulse-io-4
// in1 counted by count1 with out1…4. With a machines section every machine
// of the bundle must be listed, and nothing else; a machine's channel names
// are then required, no output, input or counter may serve two machines
// or slots, and its tuning fields take the controller's defaults.
//
// Decoding is strict: unknown fields and fields of another machine kind are
// errors naming the field ("wiring: machines.washer1.valve: not a washer
// field").
//
// Import writes identity.key, device.key, mqtt.pass, ca.pem (when the
// bundle carries a CA) and controller.yaml into a directory, all mode 0600,
// each through a temporary file that is fsynced, then renamed, config last,
// and refuses to replace any of them unless Opts.Force is set. The beacon
// backend written is hci (the real radio); "sim" only when asked for. A
// bundle whose broker URL is plaintext (tcp://) to a host other than
// loopback is refused unless Opts.Plaintext (a development broker), and
// its CA must hold a PEM certificate.
package wiring
