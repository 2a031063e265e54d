package simdev

import "context"

// ProvisionPhones writes m funded phone users (and an operator named
// after prefix, which provision always makes) into the store at dsn and
// returns their bearer tokens: the phones of a harness that provisions
// its devices with the cloud program itself (the chaos soak).
func ProvisionPhones(ctx context.Context, dsn, prefix string, m int) ([]string, error) {
	_, toks, err := provision(ctx, dsn, prefix, 0, m)
	return toks, err
}
