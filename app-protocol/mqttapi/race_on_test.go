//go:build race

package mqttapi_test

// raceEnabled is true under the race detector, which slows the strict
// decoder tenfold; TestDecodeDifferential then samples its mutations.
const raceEnabled = true
