package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"strings"

	"beaconvend/cloud/internal/atomicfile"
	"beaconvend/cloud/stickers"
	"beaconvend/cloud/store"
)

// The web checkout's commands:
//
//	cloud stickers [-config cloud.yaml | -public-url URL] -device D [-machine M] [-format svg|png|pdf] -o FILE
//	cloud machine web-checkout [-config cloud.yaml] DEVICE MACHINE on|off
//
// stickers prints a sheet with one sticker per machine of device D (or
// machine M alone): the QR code of <public_url>/m/D/<machine>, the
// machine's name and the URL as text (package cloud/stickers). The public
// URL is -public-url, else the configuration's payments.public_url.
// "-o -" writes to standard output; a file is written atomically.
//
// machine web-checkout turns a machine's web checkout on or off. It is off
// for every machine until turned on: a printed code proves nothing about
// where the payer stands (README: Web checkout at the machine).
type webFlags struct {
	device, machine, format, out, publicURL string
	on                                      bool
}

// webCommand reports whether args name one of the web checkout's
// commands and, if so, parses them.
func (m *Main) webCommand(args []string) (bool, error) {
	var fs *flag.FlagSet
	var positional int
	switch {
	case args[0] == "stickers":
		m.Cmd, args = args[:1], args[1:]
		fs = flag.NewFlagSet("cloud stickers", flag.ContinueOnError)
		m.commonFlags(fs)
		fs.StringVar(&m.web.device, "device", "", "the device whose machines get stickers")
		fs.StringVar(&m.web.machine, "machine", "", "only this machine")
		fs.StringVar(&m.web.format, "format", "", "svg, png or pdf (default: from -o's extension, else svg)")
		fs.StringVar(&m.web.out, "o", "", `the sheet's file ("-": standard output)`)
		fs.StringVar(&m.web.publicURL, "public-url", "", "the cloud's public base URL (default: payments.public_url of -config)")
	case args[0] == "machine" && len(args) > 1 && args[1] == "web-checkout":
		m.Cmd, args = args[:2], args[2:]
		fs = flag.NewFlagSet("cloud machine web-checkout", flag.ContinueOnError)
		m.commonFlags(fs)
		positional = 3
	default:
		return false, nil
	}
	fs.SetOutput(m.Stderr)
	var rest []string
	for { // flags may come before and after the positional arguments
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				fs.SetOutput(m.Stdout)
				fs.PrintDefaults()
				return true, errHelp
			}
			return true, err
		}
		if fs.NArg() == 0 {
			break
		}
		rest, args = append(rest, fs.Arg(0)), fs.Args()[1:]
	}
	if len(rest) != positional {
		if positional == 0 {
			return true, fmt.Errorf("cloud: unexpected arguments %q", rest)
		}
		return true, fmt.Errorf("cloud: usage: cloud machine web-checkout [-config cloud.yaml] DEVICE MACHINE on|off")
	}
	if positional > 0 {
		m.web.device, m.web.machine = rest[0], rest[1]
		switch rest[2] {
		case "on":
			m.web.on = true
		case "off":
		default:
			return true, fmt.Errorf("cloud: machine web-checkout: %q: want on or off", rest[2])
		}
	} else if err := m.web.checkStickers(); err != nil {
		return true, err
	}
	given := map[string]string{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = f.Value.String() })
	if m.ConfigFile == "" {
		if m.DSN == "" {
			m.DSN = "sqlite:" + abs(m.DataDir) + "/cloud.db"
		}
		return true, nil
	}
	return true, m.buildConfig(given, nil, false)
}

func (w *webFlags) checkStickers() error {
	if w.device == "" {
		return errors.New("cloud: stickers needs -device")
	}
	if w.out == "" {
		return errors.New("cloud: stickers needs -o FILE (or -o - for standard output)")
	}
	if w.format == "" {
		w.format = "svg"
		for _, f := range []string{"png", "pdf"} {
			if strings.HasSuffix(strings.ToLower(w.out), "."+f) {
				w.format = f
			}
		}
	}
	switch w.format {
	case "svg", "png", "pdf":
		return nil
	}
	return fmt.Errorf("cloud: stickers -format %q: want svg, png or pdf", w.format)
}

// webRun runs a web checkout command; ok is false for another command.
func (m *Main) webRun(ctx context.Context) (ok bool, err error) {
	switch strings.Join(m.Cmd, " ") {
	case "stickers":
		return true, m.printStickers(ctx)
	case "machine web-checkout":
		if err := m.Store.SetWebCheckout(ctx, m.web.device, m.web.machine, m.web.on); err != nil {
			return true, err
		}
		state := "off"
		if m.web.on {
			state = "on"
		}
		// In the operator's audit log, as made on the command line.
		d, err := m.Store.GetDevice(ctx, m.web.device)
		if err != nil {
			return true, err
		}
		after, _ := json.Marshal(map[string]bool{"on": m.web.on})
		if _, err := m.Store.AppendAudit(ctx, store.AuditEntry{Operator: d.OperatorID, Email: "cli", Action: "machine.web_checkout",
			Target: m.web.device + "/" + m.web.machine, After: after}); err != nil {
			return true, err
		}
		return true, m.printJSON(map[string]any{"device": m.web.device, "machine": m.web.machine, "web_checkout": state})
	}
	return false, nil
}

func (m *Main) printStickers(ctx context.Context) error {
	base := m.web.publicURL
	if base == "" && m.Config != nil {
		base = m.Config.Payments.PublicURL
	}
	if base == "" {
		return errors.New("cloud: stickers needs -public-url (or payments.public_url in -config): the address payers' phones open")
	}
	dev, err := m.Store.GetDevice(ctx, m.web.device)
	if err != nil {
		return err
	}
	var ss []stickers.Sticker
	for _, mc := range dev.Machines {
		if m.web.machine != "" && mc.ID != m.web.machine {
			continue
		}
		u, err := stickers.MachineURL(base, dev.ID, mc.ID)
		if err != nil {
			return err
		}
		name := mc.Name
		if name == "" {
			name = mc.ID
		}
		ss = append(ss, stickers.Sticker{URL: u, Name: name})
	}
	if len(ss) == 0 {
		if m.web.machine != "" {
			return fmt.Errorf("cloud: stickers: device %s has no machine %q", dev.ID, m.web.machine)
		}
		return fmt.Errorf("cloud: stickers: device %s has no machines", dev.ID)
	}
	var b bytes.Buffer
	switch m.web.format {
	case "png":
		err = stickers.WritePNG(&b, ss)
	case "pdf":
		err = stickers.WritePDF(&b, ss)
	default:
		err = stickers.WriteSVG(&b, ss)
	}
	if err != nil {
		return err
	}
	if m.web.out == "-" {
		_, err = m.Stdout.Write(b.Bytes())
		return err
	}
	if err := atomicfile.Write(m.web.out, b.Bytes()); err != nil {
		return fmt.Errorf("cloud: stickers -o: %w", err)
	}
	fmt.Fprintf(m.Stderr, "cloud: %d stickers written to %s\n", len(ss), m.web.out)
	return nil
}
