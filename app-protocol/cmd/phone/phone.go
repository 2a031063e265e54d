package main

import (
	"context"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"beaconvend/app-protocol/beacon"
	"beaconvend/app-protocol/phoneapi"
	"beaconvend/app-protocol/vend"
	"beaconvend/hw/ble"
)

// Main is the phone program: ParseFlags, Run, Close. Tests run it in
// process with Stdin, Stdout and Stderr of their own and read the results
// (Nearby, Session, Receipt, wallets) from its fields afterwards.
type Main struct {
	// Flags.
	API            string        // -api: phone API base URL
	Email          string        // -email
	Password       string        // -password
	SignUp         bool          // -signup: create the account (logs in if it exists)
	Token          string        // -token: bearer token; skips log-in
	TokenFile      string        // -token-file: token cache; "" the default under the user's config dir, "-" none
	BLE            string        // -ble: air or hci
	HCI            int           // -hci: adapter index for -ble hci
	Air            string        // -air: simulated air group; "" $BEACONVEND_BLE_AIR or ble.DefaultAir
	CompanyID      uint          // -company: Bluetooth SIG company ID of the beacons
	ScanFor        time.Duration // -scan: how long to listen for beacons
	List           bool          // -list: list nearby machines and exit
	ShowWallet     bool          // -wallet: print the wallet (after -topup) and exit
	Device         string        // -device: device ID to buy from (must be in range)
	PickNearest    bool          // -pick-nearest: the strongest signal
	Machine        string        // -machine
	Slot           string        // -slot (vending)
	CapUnits       uint64        // -cap-units
	CapAmount      string        // -cap-amount: "2.00" or minor units "200"
	CancelNoReply  bool          // -cancel-if-no-reply: cancel a start the machine did not answer, instead of waiting for it
	Source         string        // -source: payment source ID, default wallet
	TopUp          string        // -topup: amount to move into the wallet first
	TopUpSource    string        // -topup-source, default card_sandbox
	StopAfterUnits uint64        // -stop-after-units: StopSession once this much is metered
	JSONReceipt    bool          // -json-receipt: the receipt as JSON on stdout, the rest on stderr
	Progress       string        // -progress: auto, bar or lines
	Timeout        time.Duration // -timeout: bound on one session, start to receipt
	PayTimeout     time.Duration // -pay-timeout: how long to follow a top-up order to paid
	Withdraw       string        // -withdraw: amount (or "all") to return from the wallet to its channels
	ListPays       bool          // -payments: list the payments as receipts and exit
	BoardPublic    bool          // -board-public: dial boards at public device addresses (default random)
	// Claim (claim.go): an operator claims a board in registration mode.
	Claim         bool   // -claim
	ClaimID       string // -claim-id: the device ID to make of the board
	ClaimName     string // -claim-name
	ClaimKind     string // -claim-kind: water, washer, dryer or vending
	ClaimMachines int    // -claim-machines: machines of that kind (not vending); 0: 1
	ClaimCurrency string // -claim-currency
	ClaimK        int    // -claim-k: proximity-ID rotation exponent, 0-15
	ClaimTag      string // -claim-tag: claim this board (16 hex digits) among those heard
	BoardAddr     string // -board-addr: connect to this address instead of scanning
	// Step-up (stepup.go).
	PINFile          string // -pin-file: the step-up PIN, sent when the cloud asks for a step-up; "" asks
	SetPIN           bool   // -set-pin: set or change the step-up PIN
	NewPINFile       string // -new-pin-file: the new PIN of -set-pin; "" asks
	StepUpSession    string // -step-up-session: threshold AMOUNT, 0 or off
	StepUpTopUp      string // -step-up-topup
	StepUpWithdrawal string // -step-up-withdrawal

	Stdin  io.Reader // prompts, and Enter to stop; nil: no input
	Stdout io.Writer
	Stderr io.Writer
	// Interrupts delivers Ctrl-C: during a session the first stops the
	// machine, otherwise (or the second time) Run ends. nil: none.
	Interrupts <-chan os.Signal
	// Scanner overrides the one -ble opens (tests).
	Scanner ble.Scanner
	// Dial is the BLE central that relays grants and claims boards
	// (relay.go, claim.go); nil: with -ble hci the scanning adapter's,
	// else none.
	Dial       Dialer
	HTTPClient *http.Client // nil: a client with no overall timeout (SSE)
	// Now is the clock of the payment steps (nil: time.Now).
	Now func() time.Time

	// Results, set by Run.
	Nearby       []Nearby
	Session      *phoneapi.Session
	Receipt      *phoneapi.Receipt
	WalletBefore *phoneapi.Wallet
	WalletAfter  *phoneapi.Wallet
	Payment      *Payment    // the -topup order as last seen
	Withdrawal   *Withdrawal // the -withdraw answer
	Payments     []Payment   // what -payments listed
	// BoardReceipt is the signed usage report read off the board after a
	// relayed session; Relayed is the cloud's answer to its upload.
	BoardReceipt []byte
	Relayed      *phoneapi.UsageAccepted
	Claimed      *ClaimResult // what -claim did
	// StepUpSettings are the step-up settings after -set-pin or a
	// threshold flag.
	StepUpSettings *phoneapi.StepUpSettings

	client    *phoneapi.Client
	payer     payer
	payPoll   time.Duration // how often followPayment asks; 0: defaultPayPoll
	color     bool          // out is a terminal that takes colours (the QR code, redrawn lines)
	flagsSet  map[string]bool
	out       io.Writer // human output: Stdout, or Stderr with -json-receipt
	input     *lineReader
	inSession atomic.Bool
	stopReq   chan struct{}
	closers   []func() error
}

// Defaults.
const (
	DefaultAPI      = "http://127.0.0.1:8080"
	DefaultScan     = 2 * time.Second
	DefaultTimeout  = 10 * time.Minute
	defaultCurrency = "EUR"
)

// Exit statuses, so scripts can branch without parsing the message.
const (
	ExitError     = 1 // anything else
	ExitUsage     = 2 // bad flags
	ExitNoMachine = 3 // no machine in range, or not the one asked for
	ExitMachine   = 4 // the machine is busy, offline or faulty
	ExitFunds     = 5 // not enough money for the cap, or over a payment source's limit
	ExitPayment   = 6 // a top-up was not paid (closed, failed, still pending), or a withdrawal came back incomplete
)

// NewMain returns a Main on the process's standard streams.
func NewMain() *Main {
	return &Main{Stdin: os.Stdin, Stdout: os.Stdout, Stderr: os.Stderr}
}

// ParseFlags reads the command line (without the program name). It returns
// flag.ErrHelp after printing the usage for -h.
func (m *Main) ParseFlags(args []string) error {
	m.Stdout, m.Stderr = stdio(m.Stdout, os.Stdout), stdio(m.Stderr, os.Stderr)
	fs := flag.NewFlagSet("phone", flag.ContinueOnError)
	fs.SetOutput(m.Stderr)
	api := os.Getenv("BEACONVEND_API")
	if api == "" {
		api = DefaultAPI
	}
	fs.StringVar(&m.API, "api", api, "phone API base `URL` (default $BEACONVEND_API, else "+DefaultAPI+")")
	fs.StringVar(&m.Email, "email", "", "account email")
	fs.StringVar(&m.Password, "password", "", "account password (prompted when missing)")
	fs.BoolVar(&m.SignUp, "signup", false, "create the account first (logs in if it exists)")
	fs.StringVar(&m.Token, "token", "", "bearer `token` from an earlier log-in (skips log-in)")
	fs.StringVar(&m.TokenFile, "token-file", "", "token cache `file` (default: beaconvend/phone-token.json in the user's config dir; - for none)")
	fs.StringVar(&m.BLE, "ble", ble.BackendAir, "beacon receiver: air (simulated, loopback multicast) or hci (go-ble, Linux, root)")
	fs.IntVar(&m.HCI, "hci", 0, "HCI adapter `index` for -ble hci (-1: first free)")
	fs.StringVar(&m.Air, "air", "", "simulated air `group` ip:port (default $"+ble.EnvAir+", else "+ble.DefaultAir+")")
	fs.UintVar(&m.CompanyID, "company", uint(beacon.DefaultCompanyID), "Bluetooth SIG company `ID` of the beacons")
	fs.DurationVar(&m.ScanFor, "scan", DefaultScan, "how long to listen for beacons")
	fs.BoolVar(&m.List, "list", false, "list the machines in range and exit")
	fs.BoolVar(&m.ShowWallet, "wallet", false, "print the wallet (after -topup) and exit")
	fs.StringVar(&m.Device, "device", "", "buy from this device `ID` (it must be in range)")
	fs.BoolVar(&m.PickNearest, "pick-nearest", false, "buy from the device with the strongest signal")
	fs.StringVar(&m.Machine, "machine", "", "machine `ID` on the device (default: the only one, or with -pick-nearest the first idle)")
	fs.StringVar(&m.Slot, "slot", "", "vending slot `ID`")
	fs.Uint64Var(&m.CapUnits, "cap-units", 0, "cap in metered units (ml, s, cycles, items)")
	fs.StringVar(&m.CapAmount, "cap-amount", "", "cap in money: `AMOUNT` as 2.00 (major.minor) or 200 (minor units)")
	fs.StringVar(&m.Source, "source", "wallet", "payment source `ID` that holds the cap")
	fs.BoolVar(&m.CancelNoReply, "cancel-if-no-reply", false, "when the machine does not answer the start, cancel it (and wait until the cancel is final) instead of waiting for the machine")
	fs.StringVar(&m.TopUp, "topup", "", "first move `AMOUNT` (2.00 or 200 minor units) into the wallet from -topup-source")
	fs.StringVar(&m.TopUpSource, "topup-source", "card_sandbox", "payment source `ID` of -topup: wechatpay, alipay, card_sandbox (development), auto (the operator's priority)")
	fs.DurationVar(&m.PayTimeout, "pay-timeout", DefaultPayTimeout, "how long to wait for a -topup order to be paid")
	fs.StringVar(&m.Withdraw, "withdraw", "", "return `AMOUNT` (2.00, 200 minor units, or all) of the wallet to the channels it came from, and exit")
	fs.BoolVar(&m.ListPays, "payments", false, "list the payments (top-ups) as receipts and exit")
	fs.Uint64Var(&m.StopAfterUnits, "stop-after-units", 0, "stop the session once this many `units` are metered (0: run to the cap)")
	fs.BoolVar(&m.JSONReceipt, "json-receipt", false, "print the receipt as one JSON line on stdout (everything else goes to stderr)")
	fs.StringVar(&m.Progress, "progress", "auto", "progress display: bar (redrawn in place), lines, or auto (bar on a terminal)")
	fs.DurationVar(&m.Timeout, "timeout", DefaultTimeout, "give up on a session that has no receipt after this long")
	fs.BoolVar(&m.BoardPublic, "board-public", false, "relay and claim: dial boards at public device addresses (default: random, as boards advertise)")
	fs.BoolVar(&m.Claim, "claim", false, "claim a board in registration mode (operator -email/-password; needs -ble hci) and exit")
	fs.StringVar(&m.ClaimID, "claim-id", "", "-claim: the device `ID` to make of the board")
	fs.StringVar(&m.ClaimName, "claim-name", "", "-claim: the device's `name`")
	fs.StringVar(&m.ClaimKind, "claim-kind", "water", "-claim: machine `kind`: water, washer, dryer or vending")
	fs.IntVar(&m.ClaimMachines, "claim-machines", 0, "-claim: machines of that kind (not vending); 0: 1")
	fs.StringVar(&m.ClaimCurrency, "claim-currency", defaultCurrency, "-claim: the device's `currency`")
	fs.IntVar(&m.ClaimK, "claim-k", 5, "-claim: proximity-ID rotation exponent, 0-15 (IDs change every 2^k s)")
	fs.StringVar(&m.ClaimTag, "claim-tag", "", "-claim: the board's claim `tag` (16 hex digits) among those heard")
	fs.StringVar(&m.BoardAddr, "board-addr", "", "-claim: connect to this device `address` instead of scanning")
	m.stepUpFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), usageText)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("phone: unexpected argument %q (see -h)", fs.Arg(0))
	}
	m.flagsSet = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { m.flagsSet[f.Name] = true })
	return m.check()
}

const usageText = `phone is the reference beaconvend phone client: it listens for machine
beacons, resolves them through the cloud, pays for a session with a cap,
shows its progress (Enter or Ctrl-C stops it) and prints the receipt.

Usage: phone [flags]

Without -device or -pick-nearest it lists the machines in range and asks.
Example, fully scripted:
  phone -api http://127.0.0.1:8080 -email a@example.com -password secret-pass -signup \
        -topup 20.00 -pick-nearest -machine tap1 -cap-amount 2.00 -stop-after-units 1500
Paying through a QR channel (the code is drawn here; scan it with the app):
  phone -topup 20.00 -topup-source wechatpay -wallet
  phone -withdraw all        (back to the channels the money came from)
  phone -payments            (the top-ups as receipts)
Step-up PIN (asked before large caps, top-ups and withdrawals):
  phone -set-pin -step-up-session 5.00 -step-up-topup 20.00
  phone -pin-file pin.txt -device t-water -cap-amount 8.00   (steps up when the cloud asks)
Relay and claim over BLE (-ble hci: the adapter also connects as a central):
  phone -ble hci -hci 1 -device t-water -cap-units 1000   (an offline machine: the grant goes over BLE)
  phone -ble hci -claim -email op@example.com -password P -claim-id w-7 -claim-kind water

Exit status: 0 ok, 1 error, 2 usage, 3 no machine in range, 4 machine busy,
offline or faulty, 5 not enough funds or over a payment source's limit,
6 a top-up not paid or a withdrawal incomplete.

Flags:
`

// check validates flag combinations.
func (m *Main) check() error {
	if m.CapUnits > 0 && m.CapAmount != "" {
		return errors.New("phone: give -cap-units or -cap-amount, not both")
	}
	if m.Device != "" && m.PickNearest {
		return errors.New("phone: give -device or -pick-nearest, not both")
	}
	if m.CapAmount != "" {
		if _, err := parseAmount(m.CapAmount); err != nil {
			return fmt.Errorf("phone: -cap-amount: %w", err)
		}
	}
	if m.TopUp != "" {
		if _, err := parseAmount(m.TopUp); err != nil {
			return fmt.Errorf("phone: -topup: %w", err)
		}
		if m.flagsSet["source"] && !m.flagsSet["topup-source"] && m.Source != "wallet" {
			return fmt.Errorf("phone: -source %q is where a session's cap is held; the channel of -topup is -topup-source (e.g. -topup %s -topup-source %s)", m.Source, m.TopUp, m.Source)
		}
	}
	if m.Withdraw != "" && !strings.EqualFold(m.Withdraw, "all") {
		if _, err := parseAmount(m.Withdraw); err != nil {
			return fmt.Errorf("phone: -withdraw: %w (or all)", err)
		}
	}
	if m.Claim {
		if err := vend.ValidateDeviceID(m.ClaimID); err != nil {
			return fmt.Errorf("phone: -claim needs -claim-id: %w", err)
		}
		if m.ClaimK < 0 || m.ClaimK > 15 {
			return fmt.Errorf("phone: -claim-k %d: want 0-15", m.ClaimK)
		}
		if m.ClaimTag != "" {
			if b, err := hex.DecodeString(m.ClaimTag); err != nil || len(b) != beacon.ClaimTagLen {
				return fmt.Errorf("phone: -claim-tag %q: want %d hex digits", m.ClaimTag, 2*beacon.ClaimTagLen)
			}
		}
	}
	if m.BoardAddr != "" {
		if _, err := ble.ParseAddr(m.BoardAddr); err != nil {
			return fmt.Errorf("phone: -board-addr: %w", err)
		}
	}
	if err := m.checkStepUp(); err != nil {
		return err
	}
	if m.PayTimeout < 0 {
		return fmt.Errorf("phone: -pay-timeout %s: want a positive duration", m.PayTimeout)
	}
	switch m.BLE {
	case ble.BackendAir, ble.BackendHCI:
	default:
		return fmt.Errorf("phone: -ble %q: want air or hci", m.BLE)
	}
	switch m.Progress {
	case "auto", "bar", "lines":
	default:
		return fmt.Errorf("phone: -progress %q: want auto, bar or lines", m.Progress)
	}
	if m.CompanyID > 0xFFFF {
		return fmt.Errorf("phone: -company %d: want 0-65535", m.CompanyID)
	}
	return nil
}

func (m *Main) defaults() {
	m.Stdout, m.Stderr = stdio(m.Stdout, io.Discard), stdio(m.Stderr, io.Discard)
	m.out = m.Stdout
	if m.JSONReceipt {
		m.out = m.Stderr
	}
	if m.BLE == "" {
		m.BLE = ble.BackendAir
	}
	if m.CompanyID == 0 {
		m.CompanyID = uint(beacon.DefaultCompanyID)
	}
	if m.ScanFor <= 0 {
		m.ScanFor = DefaultScan
	}
	if m.Timeout <= 0 {
		m.Timeout = DefaultTimeout
	}
	if m.PayTimeout <= 0 {
		m.PayTimeout = DefaultPayTimeout
	}
	if m.payPoll <= 0 {
		m.payPoll = defaultPayPoll
	}
	if m.Now == nil {
		m.Now = time.Now
	}
	m.color = colorTerminal(m.out)
	if m.Source == "" {
		m.Source = "wallet"
	}
	if m.TopUpSource == "" {
		m.TopUpSource = "card_sandbox"
	}
	if m.Progress == "" {
		m.Progress = "auto"
	}
	if m.API == "" {
		m.API = DefaultAPI
	}
	if m.ClaimKind == "" {
		m.ClaimKind = string(vend.KindWater)
	}
	if m.ClaimCurrency == "" {
		m.ClaimCurrency = defaultCurrency
	}
	m.input = newLineReader(m.Stdin)
	m.stopReq = make(chan struct{}, 1)
}

// Run does one purchase (or, with -list, -wallet, -withdraw or -payments,
// just that): log in, top up (and follow the order to paid), scan,
// resolve, choose, start, follow, stop, receipt. Errors are
// one line; exitCode maps them to the exit status.
func (m *Main) Run(ctx context.Context) error {
	if err := m.check(); err != nil {
		return err
	}
	m.defaults()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go m.watchInterrupts(ctx, cancel)

	hc := m.HTTPClient
	if hc == nil {
		// No Timeout: it would cut the event stream. Requests are bounded
		// by their contexts instead.
		hc = &http.Client{}
	}
	m.client = phoneapi.New(strings.TrimRight(m.API, "/"), &phoneapi.Opts{HTTPClient: hc, UserAgent: "beaconvend-phone/1"})
	m.payer = newPayer(m.client, m.API, hc)

	if m.Claim {
		return m.claim(ctx)
	}
	if err := m.authenticate(ctx); err != nil {
		return err
	}
	if done, err := m.stepUpSetup(ctx); done || err != nil {
		return err
	}
	if m.TopUp != "" {
		if err := m.topUp(ctx); err != nil {
			return err
		}
	}
	if m.Withdraw != "" {
		if err := m.withdraw(ctx); err != nil {
			return err
		}
	}
	if m.ListPays {
		if err := m.listPayments(ctx); err != nil {
			return err
		}
	}
	if m.ShowWallet {
		w, err := m.wallet(ctx)
		if err != nil {
			return err
		}
		m.WalletBefore, m.WalletAfter = w, w
		fmt.Fprintf(m.Stdout, "wallet: %s available, %s held\n", w.Available, w.Held)
		return nil
	}
	if m.Withdraw != "" || m.ListPays {
		return nil
	}

	nearby, err := m.scan(ctx)
	if err != nil {
		return err
	}
	m.Nearby = nearby
	if m.List || m.Device == "" && !m.PickNearest {
		fmt.Fprint(m.out, formatNearby(nearby))
	} else {
		fmt.Fprintln(m.out, formatInRange(nearby))
	}
	if m.List {
		return nil
	}
	t, err := m.choose(ctx, nearby)
	if err != nil {
		return err
	}
	return m.buy(ctx, t)
}

// watchInterrupts turns Ctrl-C into a stop request during a session and
// into cancelling Run otherwise.
func (m *Main) watchInterrupts(ctx context.Context, cancel context.CancelFunc) {
	if m.Interrupts == nil {
		return
	}
	stopped := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-m.Interrupts:
			if m.inSession.Load() && !stopped {
				stopped = true
				m.requestStop()
				continue
			}
			fmt.Fprintln(m.Stderr, "phone: interrupted")
			cancel()
			return
		}
	}
}

func (m *Main) requestStop() {
	select {
	case m.stopReq <- struct{}{}:
	default:
	}
}

// Close releases the scanner.
func (m *Main) Close() error {
	var errs []error
	for i := len(m.closers) - 1; i >= 0; i-- {
		errs = append(errs, m.closers[i]())
	}
	m.closers = nil
	return errors.Join(errs...)
}

// wallet reads the wallet.
func (m *Main) wallet(ctx context.Context) (*phoneapi.Wallet, error) {
	w, err := retry(ctx, func(ctx context.Context) (*phoneapi.Wallet, error) { return m.client.GetWallet(ctx) })
	if err != nil {
		return nil, fmt.Errorf("phone: wallet: %w", err)
	}
	return w, nil
}

// retry calls f until it succeeds, fails with a non-transient error, or
// five attempts have failed, waiting the server's Retry-After or a short
// backoff in between. Callers reuse one idempotency key inside f.
func retry[T any](ctx context.Context, f func(context.Context) (T, error)) (T, error) {
	var zero T
	wait := 200 * time.Millisecond
	for attempt := 1; ; attempt++ {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		v, err := f(rctx)
		cancel()
		if err == nil {
			return v, nil
		}
		// device.no_reply is transient but not retried here: the session
		// exists and money is held; the caller follows it instead.
		if vend.KindOf(err) != vend.Transient || vend.CodeOf(err) == "device.no_reply" || attempt == 5 || ctx.Err() != nil {
			return zero, err
		}
		d := wait
		var ae *phoneapi.APIError
		if errors.As(err, &ae) && ae.RetryAfter > 0 {
			d = ae.RetryAfter
		}
		select {
		case <-ctx.Done():
			return zero, ctx.Err()
		case <-time.After(d):
		}
		wait *= 2
	}
}
