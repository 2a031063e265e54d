// Package stickers prints the codes an operator sticks on machines: a
// sheet with one sticker per machine, each the QR code of the machine's
// web checkout page (<public_url>/m/<device>/<machine>), the machine's
// name, and the URL as text for a payer whose camera does not read codes.
// Sheets are A4, three columns by four rows per page, as SVG (one long
// page), PNG (one image of every page stacked, 200 dots per inch) or PDF
// (a page per twelve stickers).
//
// The codes are encoded with rsc.io/qr at level M (15% redundancy, so a
// scratched sticker still reads) with a quiet zone of four modules.
// The PDF is written by hand (a few dozen lines of PDF 1.4: rectangles
// for the modules and the standard Helvetica font, which every reader
// has, so nothing is embedded): the module graph has no PDF library and
// one is not worth a dependency for filled squares and two lines of
// text. Helvetica's WinAnsi encoding covers Latin-1; another character
// in a machine's name prints as '?' in the PDF (the SVG keeps it).
// The PNG draws its text with the classic 5×7 dot font of character
// displays, built in (font.go): the module graph has no font rasterizer
// (golang.org/x/image is not in it). It covers ASCII; another character
// prints as '?' there (the SVG keeps it).
//
// A printed code proves nothing about presence: anyone with a photo of
// it opens the page from anywhere. See cloud/webcheckout for why the web
// checkout is off per machine until the operator turns it on.
package stickers
