// Package proxid computes and resolves rotating proximity IDs: the 8-byte
// value a board advertises so that a phone can prove, through the cloud,
// that it stands at this machine now.
//
// # Scheme
//
// It is Eddystone-EID's algorithm (github.com/google/eddystone, eddystone-eid)
// with Unix time as the counter: each device has a 16-byte identity key
// shared only with the cloud; the time counter (Unix seconds, uint32) is
// quantized to windows of 2^K seconds; a temporary key is AES-128 of the
// identity key over the counter's top 16 bits, and the ID is the first 8
// bytes of AES-128 under that temporary key over K and the window start (see
// [Compute]). Without the identity key an ID is unpredictable and unlinkable
// from one window to the next, so a tracker cannot follow a machine's
// beacon and a copied ID dies with its window.
//
// # Why K = 5 (32-second windows) by default
//
// The cloud accepts the current window ± 1, so an ID copied off the air (or
// relayed from a phone elsewhere) is usable for at most three windows: 96 s
// at K = 5. Shorter windows would tighten that, but they also shrink the
// clock skew tolerated between board, phone and cloud (one window) and
// cost a stop–set–start of the advertisement on every rotation (the only
// update that virtual and many real controllers propagate, see hw/ble), plus
// a resolver rebuild per window. Longer ones (K = 6, 64 s; Eddystone's
// typical K = 8–10) widen the replay window past what a person standing at
// a machine needs: scan, resolve and start take a few seconds. K is
// configurable from 0 to 15; a fleet normally uses one K, and a cloud with
// devices on several K runs one Resolver per K.
//
// # Resolver
//
// [Resolver] holds, for every device, its IDs for the current window and
// its two neighbours in three hash maps. A lookup is at most three map
// probes and does not allocate. When the window rolls, the oldest map is
// dropped and one new window's IDs are computed outside the lock and
// swapped in (incremental; a clock jump recomputes up to three). Adding,
// removing or re-keying a device updates the three maps at once. Two
// devices sharing an ID in one window (a 2^-64 event per pair, or a
// provisioning mistake that reuses a key) resolve to ErrAmbiguous rather
// than to the wrong device.
//
// # Benchmarks
//
// go test -run XXX -bench . -benchmem ./app-protocol/proxid/ on the 2-core
// x86-64 development machine (Go 1.26, AES-NI):
//
//	BenchmarkResolve100k-2   23.3 ns/op        0 B/op        0 allocs/op  (lookup among 100,000 devices)
//	BenchmarkRoll100k-2      33.0 ms/op     56.1 MB/op  300,258 allocs/op  (one window rebuilt for 100,000 devices)
//	BenchmarkMemory100k-2    16.2 MiB held for 100,000 devices (three windows)
//	BenchmarkCompute-2        535 ns/op     1088 B/op        6 allocs/op  (one ID from the identity key)
//
// A roll costs about 0.1% of one core at K = 5. Its allocations are the two
// AES key schedules per device that crypto/aes allocates; caching the
// temporary key's cipher per device would halve the time for about 50 MiB
// more memory at 100,000 devices, which is not worth it at this rate.
package proxid
