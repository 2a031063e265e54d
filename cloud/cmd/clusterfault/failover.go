package main

import (
	"errors"

	"beaconvend/cloud/internal/clusterfault"
)

func startFailover(cfg *clusterfault.Config) (func(), error) {
	return nil, errors.New("the pg_auto_failover formation is not wired yet (use -failover=false)")
}
