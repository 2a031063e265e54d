package webcheckout_test

import (
	"bufio"
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"beaconvend/cloud/webcheckout"
)

// The events stream sends the checkout at once, needs the checkout's
// cookie, and a few streams per checkout are all one instance serves.
func TestEventsStream(t *testing.T) {
	f := newFake()
	h, err := webcheckout.New(webcheckout.Options{Backend: f, MaxStreams: 2})
	if err != nil {
		t.Fatal(err)
	}
	srv := newServerWith(t, h)
	c := client(t)
	form := machineForm(t, c, srv.URL)
	form.Set("cap", "u:1000")
	form.Set("source", "alipay")
	if res, body := post(t, c, srv.URL+"/m/dev1/tap1/checkout", form); res.StatusCode != 303 {
		t.Fatalf("checkout: %d %s", res.StatusCode, body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	open := func(c *http.Client) *http.Response {
		t.Helper()
		req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/m/c/co1/events", nil)
		res, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { res.Body.Close() })
		return res
	}
	if res := open(&http.Client{}); res.StatusCode != 404 {
		t.Errorf("events without the checkout's cookie: %d, want 404", res.StatusCode)
	}
	first := open(c)
	if first.StatusCode != 200 || first.Header.Get("Content-Type") != "text/event-stream" {
		t.Fatalf("events: %d %s", first.StatusCode, first.Header.Get("Content-Type"))
	}
	sc := bufio.NewScanner(first.Body)
	var got []string
	for len(got) < 3 && sc.Scan() {
		if l := sc.Text(); l != "" {
			got = append(got, l)
		}
	}
	if len(got) < 3 || got[1] != "event: checkout" || !strings.Contains(got[2], `"state":"awaiting_payment"`) || strings.Contains(got[2], "tok-") {
		t.Errorf("stream began %q: want retry, then the checkout (without its token)", got)
	}
	open(c)
	if res := open(c); res.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a third stream of one checkout: %d, want 429", res.StatusCode)
	}
}
