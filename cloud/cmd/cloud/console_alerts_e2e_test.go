package main

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"beaconvend/cloud/internal/browsertest"
	"beaconvend/cloud/internal/mailpittest"
	"beaconvend/cloud/internal/svctest"
	"beaconvend/cloud/service"
	"beaconvend/cloud/store"
)

// nodeHook is a webhook receiver in Node.js whose signature check is
// Node's crypto, not ours: for each POST it prints one JSON line
// (whether the signature matched, whether a body with one bit flipped
// would have been refused, the delivery header and the body) and
// answers 204, or 401 for a bad signature.
const nodeHook = `
const http = require("http"), crypto = require("crypto");
const secret = process.argv[2];
const mac = (t, body) => crypto.createHmac("sha256", secret).update(t + ".").update(body).digest("hex");
const srv = http.createServer((req, res) => {
  const parts = [];
  req.on("data", c => parts.push(c));
  req.on("end", () => {
    const body = Buffer.concat(parts);
    const m = /^t=(\d+),v1=([0-9a-f]{64})$/.exec(req.headers["beaconvend-signature"] || "");
    let ok = false, tamperedRefused = false;
    if (m) {
      ok = crypto.timingSafeEqual(Buffer.from(mac(m[1], body)), Buffer.from(m[2]));
      const bad = Buffer.from(body); bad[bad.length - 2] ^= 1;
      tamperedRefused = mac(m[1], bad) !== m[2];
    }
    console.log(JSON.stringify({ok, tamperedRefused, delivery: req.headers["beaconvend-delivery"] || "", body: body.toString()}));
    res.writeHead(ok ? 204 : 401); res.end();
  });
});
srv.listen(0, "127.0.0.1", () => console.log(JSON.stringify({port: srv.address().port})));
`

// hookLine is one line nodeHook prints.
type hookLine struct {
	Port            int
	OK              bool
	TamperedRefused bool
	Delivery        string
	Body            string
}

// startNodeHook runs nodeHook with secret and returns its URL and its
// lines.
func startNodeHook(t *testing.T, secret string) (string, <-chan hookLine) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		svctest.Missing(t, "Node.js (node)", "apt-get install nodejs")
	}
	f := filepath.Join(t.TempDir(), "hook.js")
	if err := os.WriteFile(f, []byte(nodeHook), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, node, f, secret)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); _ = cmd.Wait() })
	lines := make(chan hookLine, 16)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	if !sc.Scan() {
		t.Fatal("node webhook receiver did not start")
	}
	var first hookLine
	if err := json.Unmarshal(sc.Bytes(), &first); err != nil || first.Port == 0 {
		t.Fatalf("node webhook receiver printed %q", sc.Text())
	}
	go func() {
		for sc.Scan() {
			var l hookLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				lines <- l
			}
		}
	}()
	return "http://127.0.0.1:" + strconv.Itoa(first.Port) + "/hook", lines
}

// TestConsoleAlertsInChromium: the owner sets the alert settings in the
// console (recipients, webhook, a short offline threshold); a board is
// killed; the offline alert appears in the inbox after the threshold, is
// e-mailed to a real SMTP server (Mailpit) and posted to a webhook whose
// signature Node's crypto checks; a technician acknowledges it; a viewer
// is shown no button and is refused a hand-made request; axe finds
// nothing serious or critical on the alert pages.
func TestConsoleAlertsInChromium(t *testing.T) {
	mp := mailpittest.Start(t, mailpittest.Opts{})
	host, port, _ := net.SplitHostPort(mp.SMTPAddr)
	p, _ := strconv.Atoi(port)
	r := newConsoleRig(t, consoleRigOpts{Config: map[string]any{"alerts": map[string]any{
		"smtp": map[string]any{"host": host, "port": p, "from": "Beaconvend alerts <alerts@console-rig.example>", "tls": "none"},
	}}, Args: []string{"-presence-stale", "3s"}})
	ctx := context.Background()
	board := r.Board(0)

	// The owner's settings page shows the webhook secret; the receiver
	// checks with it.
	owner := r.login(t, service.RoleOwner)
	owner.Go(r.URL + "/console/alert-settings")
	secret := browsertest.Eval[string](owner, `(document.querySelector("#webhook-help code:last-of-type") || {}).textContent || ""`)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("settings page shows secret %q", secret)
	}
	hookURL, hooks := startNodeHook(t, secret)
	owner.Axe()
	owner.Do(chromedp.SetValue("#email_to", "ops@console-rig.example"),
		chromedp.SetValue("#webhook_url", hookURL),
		chromedp.SetValue("#offline_after_min", "0.05"))
	owner.ClickAndLoad("form[action='/console/alert-settings'] button[type=submit]")
	owner.WaitText("main", "Alert settings saved.")
	owner.Axe()

	// A bad value is named, nothing saved.
	owner.Do(chromedp.SetValue("#time_zone", "Mars/Olympus"))
	owner.ClickAndLoad("form[action='/console/alert-settings'] button[type=submit]")
	owner.WaitText("main", "time_zone")
	if set, _ := r.Store().AlertSettings(ctx, r.Operator); set.TimeZone != "UTC" || set.OfflineAfter != 3*time.Second || set.EmailTo != "ops@console-rig.example" {
		t.Fatalf("settings after a refused save = %+v", set)
	}
	owner.Axe()

	r.KillBoard(t, 0)
	var alert store.Alert
	deadline := time.Now().Add(60 * time.Second)
	for {
		as, _, err := r.Store().ListAlerts(ctx, r.Operator, store.AlertFilter{Kind: store.AlertOffline})
		if err != nil {
			t.Fatal(err)
		}
		if len(as) > 0 {
			alert = as[0]
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no offline alert 60 s after the board was killed")
		}
		time.Sleep(200 * time.Millisecond)
	}
	if alert.Device != board.ID || alert.State != store.AlertOpen {
		t.Fatalf("alert = %+v", alert)
	}

	// E-mailed to Mailpit.
	ms := mp.Wait(t, 1, 60*time.Second)
	m := mp.Message(t, ms[0].ID)
	if !strings.Contains(m.Subject, "is offline") || !strings.Contains(m.Subject, "[beaconvend critical]") ||
		len(m.To) != 1 || m.To[0].Address != "ops@console-rig.example" {
		t.Errorf("mail: subject %q to %v", m.Subject, m.To)
	}
	if !strings.Contains(m.Text, "Device: "+board.ID) || !strings.Contains(m.Text, "Kind: device.offline") || !strings.Contains(m.Text, alert.ID) {
		t.Errorf("mail body:\n%s", m.Text)
	}

	// Posted to the webhook, signature checked by Node.
	select {
	case h := <-hooks:
		if !h.OK || !h.TamperedRefused || h.Delivery == "" {
			t.Errorf("webhook: signature ok %v, tampered refused %v, delivery %q", h.OK, h.TamperedRefused, h.Delivery)
		}
		var body service.AlertWebhook
		if err := json.Unmarshal([]byte(h.Body), &body); err != nil || body.Alert.ID != alert.ID || body.Alert.Kind != "device.offline" || body.Alert.Device != board.ID {
			t.Errorf("webhook body %s (%v)", h.Body, err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("no webhook 60 s after the alert")
	}

	// The viewer sees it but may not acknowledge it.
	viewer := r.login(t, service.RoleViewer)
	viewer.Go(r.URL + "/console/alerts")
	viewer.WaitText("main", "is offline")
	viewer.WaitText("nav", "Alerts (1 open)") // the live count in the navigation
	if n := browsertest.Eval[int](viewer, `document.querySelectorAll("form[action$='/ack']").length`); n != 0 {
		t.Errorf("the viewer is shown %d acknowledge buttons", n)
	}
	if st := post(viewer, "/console/alerts/"+alert.ID+"/ack", map[string]string{"csrf": csrfOf(viewer)}); st != 403 {
		t.Errorf("viewer's acknowledge = %d, want 403", st)
	}
	viewer.Axe()

	// The technician acknowledges it from the inbox.
	tech := r.login(t, service.RoleTechnician)
	tech.Go(r.URL + "/console/alerts")
	tech.WaitText("main", "is offline")
	tech.Axe()
	tech.ClickAndLoad("form[action='/console/alerts/" + alert.ID + "/ack'] button")
	tech.WaitText("main", "Alert acknowledged.")
	got, err := r.Store().GetAlert(ctx, r.Operator, alert.ID)
	if err != nil || got.State != store.AlertAcknowledged || got.AckedBy != r.Accounts[service.RoleTechnician].Email {
		t.Fatalf("after the technician's acknowledge: %+v, %v", got, err)
	}
	tech.Go(r.URL + "/console/alerts/" + alert.ID)
	tech.WaitText("main", "Acknowledged by "+r.Accounts[service.RoleTechnician].Email)
	tech.WaitText("main", "E-mail")
	tech.Axe()
	// The audit log has who acknowledged it.
	owner.Go(r.URL + "/console/audit")
	owner.WaitText("main", "alert.ack")
}
