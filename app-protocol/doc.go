// Package protocol is the root of beaconvend's wire contracts. It holds no
// code of its own; its files are the written specs and the test vectors that
// phone, board and cloud implementations share:
//
//   - openapi.yaml: the phone API (OpenAPI 3.1), implemented by package phoneapi;
//   - asyncapi.yaml: the MQTT topics and payloads (AsyncAPI 3), package mqttapi;
//   - testdata/vectors.json: language-neutral test vectors for the beacon
//     frame (package beacon), the rotating proximity ID (proxid), the
//     canonical grant and usage encodings and their Ed25519 signatures
//     (signed), and prices (vend). VECTORS.md describes the format;
//   - GATT.md: the board's BLE GATT service for relay and claim (package
//     gattapi), with its own vectors in testdata/gatt_vectors.json.
//
// The test in this directory recomputes every vector with the Go code, and
// cross-checks the proximity-ID vectors with the openssl command (an AES
// implementation this project did not write). Regenerate the file after an
// intended change with: go test ./app-protocol -run TestVectors -update
package protocol
