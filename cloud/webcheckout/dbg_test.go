package webcheckout_test

import (
	"os"
	"testing"

	"beaconvend/app-protocol/phoneapi"
	"beaconvend/cloud/internal/browsertest"
)

func TestDbgShots(t *testing.T) {
	b := browsertest.Start(t)
	f := newFake()
	srv := newServer(t, f)
	p := b.Page(t, browsertest.Phone)
	p.Go(srv.URL + "/m/dev1/tap1")
	os.WriteFile("/tmp/shot-machine.png", browsertest.Run(p, chromedpFull()), 0o644)
	p.Click("#source-alipay")
	p.ClickAndLoad("#pay")
	os.WriteFile("/tmp/shot-pay.png", browsertest.Run(p, chromedpFull()), 0o644)
	f.mu.Lock()
	co := f.checkouts["co1"]
	co.State, co.Units, co.Captured, co.Returned = phoneapi.CheckoutDone, 1500, phoneapi.Amount{Minor: 75, Currency: "CNY"}, phoneapi.Amount{Minor: 25, Currency: "CNY"}
	co.Refunds = []phoneapi.RefundPart{{RefundNo: "rf1", Order: co.Order, Source: "alipay", Amount: co.Returned, State: phoneapi.RefundSucceeded}}
	f.checkouts["co1"] = co
	f.mu.Unlock()
	p.Go(srv.URL + "/r/rcpt-co1")
	os.WriteFile("/tmp/shot-receipt.png", browsertest.Run(p, chromedpFull()), 0o644)
}
