// Package svctest holds the one rule for test suites that need a real
// service (PostgreSQL, Mosquitto): when the service cannot be had, the
// test fails if $VEND_REQUIRE_SERVICES is set (CI sets it, so a suite can
// never silently vanish there) and is skipped with a loud message
// otherwise. Imported only by tests.
package svctest

import (
	"os"
	"testing"
)

// Missing reports that what a test needs is absent, per the rule above;
// hint says how to provide it. It does not return.
func Missing(tb testing.TB, what, hint string) {
	tb.Helper()
	if os.Getenv("VEND_REQUIRE_SERVICES") != "" {
		tb.Fatalf("%s is not available and VEND_REQUIRE_SERVICES is set: %s", what, hint)
	}
	tb.Skipf("!!!!!!!! SKIPPED: %s is not available: %s (set VEND_REQUIRE_SERVICES=1 to make this a failure) !!!!!!!!", what, hint)
}
