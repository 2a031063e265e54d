package main

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/mdp/qrterminal/v3"
	"golang.org/x/term"
	"rsc.io/qr"
)

// The QR code of a payment's code_url is drawn by
// github.com/mdp/qrterminal/v3 (pinned at v3.2.1), which encodes with
// rsc.io/qr (v0.2.0) and renders two modules per character cell with the
// half-block characters ▀ ▄ █, so a code fits a terminal of 80 columns.
// Only its GenerateWithConfig is used: Generate probes the terminal for
// Sixel by reading standard input, and GenerateWithConfig ignores an
// encoding error (it would draw a nil code), so writeQR encodes once
// itself first and returns that error.
const (
	qrLevel     = qr.M // 15% error correction: a scanner copes with a few smudged cells
	qrQuietZone = 4    // light modules around the code, as ISO/IEC 18004 asks
)

// The characters, with "dark module" drawn: the top and bottom half of a
// cell, dark or light.
const (
	qrDarkDark   = "█"
	qrDarkLight  = "▀"
	qrLightDark  = "▄"
	qrLightLight = " "
)

// qrColors sets dark-on-white for a line drawn on a terminal (black
// foreground, bright white background), so the code reads the same on a
// dark and on a light terminal theme; qrReset ends it.
const (
	qrColors = "\x1b[30;107m"
	qrReset  = "\x1b[0m"
)

// writeQR writes text as a QR code of half-block characters with a quiet
// zone of qrQuietZone light modules on every side. With color each line is
// set dark-on-white with ANSI colours; without, the characters draw the
// dark modules on the terminal's own background (right on a light
// background; for logs and files). A text too long for a QR code is an
// error naming its length; nothing is written then.
func writeQR(w io.Writer, text string, color bool) error {
	if _, err := qr.Encode(text, qrLevel); err != nil {
		return fmt.Errorf("phone: qr code of %d bytes: %w", len(text), err)
	}
	var b bytes.Buffer
	qrterminal.GenerateWithConfig(text, qrterminal.Config{
		Level:          qrLevel,
		Writer:         &b,
		HalfBlocks:     true,
		QuietZone:      qrQuietZone,
		BlackChar:      qrDarkDark,
		BlackWhiteChar: qrDarkLight,
		WhiteBlackChar: qrLightDark,
		WhiteChar:      qrLightLight,
	})
	lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
	// The library ends the bottom quiet zone half-way down a line, leaving
	// the lower half to the terminal's background (it assumes a dark one):
	// drawn here, that would be a dark bar. Make that line light.
	if last := lines[len(lines)-1]; strings.Trim(last, qrLightDark) == "" {
		lines[len(lines)-1] = strings.Repeat(qrLightLight, utf8.RuneCountInString(last))
	}
	var out bytes.Buffer
	for _, l := range lines {
		if color {
			l = qrColors + l + qrReset
		}
		out.WriteString(l + "\n")
	}
	_, err := w.Write(out.Bytes())
	return err
}

// colorTerminal reports whether w is a terminal that should get colours:
// not when NO_COLOR is set or TERM is dumb.
func colorTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return false
	}
	return os.Getenv("NO_COLOR") == "" && os.Getenv("TERM") != "dumb"
}
