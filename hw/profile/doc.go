// Package profile describes Modbus RTU I/O boards in YAML: the serial
// setting, the slave address, which coils drive which outputs, which
// discrete inputs read which sensors, which registers hold 16- or 32-bit
// pulse counters and in what word order, and an optional output watchdog.
// Machine drivers (hw/machine) and the board emulator (hw/emu) both work
// from a profile, so a new board needs a profile, not code.
//
// Built-in profiles (boards/*.yaml): generic-relay-4, generic-relay-8 and
// generic-relay-16 (the common "N-channel Modbus RTU relay" modules, 9600
// 8N1, address 1) and pulse-io-4 (4 outputs, 4 inputs with hardware pulse
// counters, an output watchdog).
//
// # Writing a profile for a new board
//
//  1. From the board's manual, note its factory address, baud rate and
//     parity, and the register map. Convert 1-based Modicon numbers
//     (00001 coil, 10001 discrete input, 30001 input register, 40001
//     holding register) to the 0-based protocol addresses used here.
//  2. List every coil under outputs with a name the machine config will use
//     (valve, motor-3, coin), every discrete input under inputs (set
//     active_low for sensors that pull the line low), and every pulse
//     counter under counters with its table (input or holding), first
//     register, width, and for 32-bit counters whether the high word comes
//     first.
//  3. If the board can switch its outputs off by itself when the master
//     stops talking, describe that register under watchdog; otherwise the
//     controller's board needs a hardware watchdog (hw/machine's doc says
//     what to wire).
//  4. If an input is wired to a claim button (or jumper), name it under
//     claim_input: held at power-up it returns the board to registration
//     mode (controller/claim) so that it can be claimed again.
//  5. Check it: the controller refuses a profile with a mistake and names
//     the field; hwsim -profile FILE emulates the board, so the profile can
//     be tried before the board arrives.
package profile
