package simdev

import "context"

// Provision writes an operator, n water devices named prefix-NNNNN (one
// machine "tap1" each) and m funded phone users into the store at dsn,
// as the fleet benchmark does, and returns the devices' identities
// (without the cloud keys) and the phones' bearer tokens. The cluster
// fault test (cloud/internal/clusterfault) provisions its fleet with it.
func Provision(ctx context.Context, dsn, prefix string, n, m int) ([]Identity, []string, error) {
	return provision(ctx, dsn, prefix, n, m)
}
