// Package pty opens kernel pseudo-terminal pairs: the emulators (hw/emu)
// hold the master end and a serial driver (go.bug.st/serial, as on a real
// board) opens the slave path. Tests and the demo drive real serial code
// through them; a pty carries bytes in arbitrary chunks and ignores baud
// rate and parity, which the drivers must tolerate.
package pty
