package machine

import (
	"context"
	"errors"
	"time"

	"beaconvend/app-protocol/vend"
	"beaconvend/hw/profile"
)

// settled waits until every output in outs reads OFF and counter has not
// moved for quiet (at least two polls), and returns the counter's raw
// reading then. It gives up after bound with stable false and the latest
// reading, or with ErrBoardFault when an output still reads ON or no good
// poll came. Errors: ErrBoardFault when the board is in fault; ctx's error.
func settled(ctx context.Context, b *Board, outs []string, counter string, quiet, bound time.Duration) (raw uint32, stable bool, err error) {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	s := b.Snapshot()
	var since time.Time
	polls, have, on := 0, false, ""
	for {
		if s.Fault {
			return 0, false, vend.Errorf(ErrBoardFault, "%v", s.Err)
		}
		if s.OK {
			on = ""
			for _, o := range outs {
				if s.Outputs[o] {
					on = o
					break
				}
			}
		}
		if s.OK && on == "" {
			v := s.Counters[counter]
			if !have || v != raw {
				raw, have, since, polls = v, true, s.At, 0
			} else {
				polls++
			}
			if polls >= 2 && s.At.Sub(since) >= quiet {
				return raw, true, nil
			}
		}
		next, err := b.Next(ctx, s.Seq)
		if err != nil {
			switch {
			case !errors.Is(err, context.DeadlineExceeded):
			case on != "":
				return 0, false, vend.Errorf(ErrBoardFault, "output %s still reads ON after %s", on, bound)
			case have:
				return raw, false, nil
			default:
				return 0, false, vend.Errorf(ErrBoardFault, "no good poll in %s", bound)
			}
			return 0, false, err
		}
		s = next
	}
}

// counted returns the pulses counter c counted from meterStart to the raw
// reading raw, given meterLast, a later reading of the same run (both
// extended past counter wrap): meterLast - meterStart plus the counter's
// advance since meterLast, modulo its width. ok is false when raw went
// backwards from meterLast (the board lost power, which resets its
// counters, or was replaced), or meterLast is below meterStart.
func counted(c profile.Counter, meterStart, meterLast uint64, raw uint32) (pulses uint64, ok bool) {
	if meterLast < meterStart {
		return 0, false
	}
	var d int64
	if c.Width == 16 {
		d = int64(int16(uint16(raw) - uint16(meterLast)))
	} else {
		d = int64(int32(raw - uint32(meterLast)))
	}
	if d < 0 {
		return 0, false
	}
	return meterLast - meterStart + uint64(d), true
}
