package provision

import (
	"strconv"
	"strings"

	pb "beaconvend/app-protocol/provision"
	"beaconvend/app-protocol/vend"
)

// ParsePrice reads MINOR/PER, e.g. "50/1000" (0.50 per 1000 units).
// Errors: ErrInput.
func ParsePrice(s string) (vend.Price, error) {
	a, b, ok := strings.Cut(s, "/")
	minor, err1 := strconv.ParseInt(a, 10, 64)
	per, err2 := strconv.ParseUint(b, 10, 32)
	p := vend.Price{Minor: minor, Per: uint32(per)}
	if !ok || err1 != nil || err2 != nil || p.Validate() != nil {
		return p, bad("price %q: want MINOR/PER such as 50/1000", s)
	}
	return p, nil
}

// ParseSlots reads vending slots "ID:NAME:MINOR,…", each priced per item.
// Errors: ErrInput naming the bad entry.
func ParseSlots(s string) ([]pb.Slot, error) {
	var out []pb.Slot
	seen := map[string]bool{}
	for _, spec := range strings.Split(s, ",") {
		parts := strings.Split(spec, ":")
		if len(parts) != 3 {
			return nil, bad("slot %q: want ID:NAME:MINOR", spec)
		}
		if err := vend.ValidateSlotID(parts[0]); err != nil || parts[0] == "" {
			return nil, bad("slot %q: id: want 1-32 of A-Z a-z 0-9 . _ -", spec)
		}
		if seen[parts[0]] {
			return nil, bad("slot %q: id %s twice", spec, parts[0])
		}
		seen[parts[0]] = true
		minor, err := strconv.ParseInt(parts[2], 10, 64)
		p := vend.Price{Minor: minor, Per: 1}
		if err != nil || p.Validate() != nil {
			return nil, bad("slot %q: price %q: want minor units, e.g. 150", spec, parts[2])
		}
		out = append(out, pb.Slot{ID: parts[0], Name: parts[1], Price: p})
	}
	return out, nil
}
