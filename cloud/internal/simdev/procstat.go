package simdev

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"beaconvend/app-protocol/vend"
)

// Process statistics errors.
var (
	ErrNoProcess  = vend.E(vend.NotFound, "simdev.no_process", "simdev: no such process")
	ErrProcFormat = vend.E(vend.Internal, "simdev.proc_format", "simdev: unexpected /proc format")
)

// ProcStat is one reading of a process's CPU time and memory (Linux /proc).
type ProcStat struct {
	PID     int
	Comm    string        // the command name, at most 15 bytes
	Start   uint64        // start time in clock ticks after boot; with PID, names the process
	CPU     time.Duration // user + system CPU time since it started
	RSS     uint64        // resident set size now, bytes (VmRSS)
	PeakRSS uint64        // largest resident set size so far, bytes (VmHWM)
}

// clockTick is the length of a clock tick (1/CLK_TCK), in which /proc
// reports CPU times: AT_CLKTCK from the auxiliary vector (sysconf's
// source, which Go cannot call without cgo), else 1/100 s, the value on
// every Linux architecture Go supports.
var clockTick = sync.OnceValue(func() time.Duration {
	const atClkTck = 17 // AT_CLKTCK, <elf.h>
	if av, err := unix.Auxv(); err == nil {
		for _, kv := range av {
			if kv[0] == atClkTck && kv[1] > 0 && kv[1] <= uintptr(time.Second) {
				return time.Second / time.Duration(kv[1])
			}
		}
	}
	return 10 * time.Millisecond
})

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status. It returns an
// error wrapping ErrNoProcess when the process does not exist (or exited
// between the two reads), ErrProcFormat when a file does not parse, and
// other read errors as they are.
func ReadProc(pid int) (ProcStat, error) {
	stat, err := readProcFile(pid, "stat")
	if err != nil {
		return ProcStat{}, err
	}
	ps, err := ParseProcStat(stat)
	if err != nil {
		return ProcStat{}, fmt.Errorf("%w (pid %d)", err, pid)
	}
	status, err := readProcFile(pid, "status")
	if err != nil {
		return ProcStat{}, err
	}
	if ps.RSS, ps.PeakRSS, err = ParseProcStatus(status); err != nil {
		return ProcStat{}, fmt.Errorf("%w (pid %d)", err, pid)
	}
	ps.PID = pid
	return ps, nil
}

func readProcFile(pid int, name string) ([]byte, error) {
	if pid <= 0 {
		return nil, vend.Errorf(ErrNoProcess, "pid %d", pid)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/" + name)
	if err != nil {
		// ESRCH: the process exited after the open.
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("%w: pid %d: %w", ErrNoProcess, pid, err)
		}
		return nil, fmt.Errorf("simdev: %w", err)
	}
	return b, nil
}

// ParseProcStat reads the command name, start time and CPU time out of a
// /proc/<pid>/stat line (proc(5)). The name is in parentheses and may
// hold spaces and parentheses itself, so the fields are counted from the
// last ')'.
func ParseProcStat(b []byte) (ProcStat, error) {
	lp, rp := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if lp < 0 || rp < lp {
		return ProcStat{}, vend.Errorf(ErrProcFormat, "stat: no (comm)")
	}
	f := bytes.Fields(b[rp+1:])
	// f[0] is field 3 (state): utime is field 14, stime 15, starttime 22.
	const utime, stime, starttime = 14 - 3, 15 - 3, 22 - 3
	if len(f) <= starttime {
		return ProcStat{}, vend.Errorf(ErrProcFormat, "stat: %d fields after comm", len(f))
	}
	var n [3]uint64
	for i, k := range []int{utime, stime, starttime} {
		v, err := strconv.ParseUint(string(f[k]), 10, 64)
		if err != nil {
			return ProcStat{}, vend.Errorf(ErrProcFormat, "stat field %d: %q", k+3, f[k])
		}
		n[i] = v
	}
	return ProcStat{Comm: string(b[lp+1 : rp]), CPU: time.Duration(n[0]+n[1]) * clockTick(), Start: n[2]}, nil
}

// ParseProcStatus reads VmRSS and VmHWM ("VmRSS:   1234 kB") out of
// /proc/<pid>/status, in bytes. Both are absent for kernel threads and
// zombies, which have no memory of their own: 0 then.
func ParseProcStatus(b []byte) (rss, peak uint64, err error) {
	for line := range bytes.Lines(b) {
		var dst *uint64
		switch {
		case bytes.HasPrefix(line, []byte("VmRSS:")):
			dst = &rss
		case bytes.HasPrefix(line, []byte("VmHWM:")):
			dst = &peak
		default:
			continue
		}
		f := bytes.Fields(line[6:])
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, 0, vend.Errorf(ErrProcFormat, "status: %q", bytes.TrimSpace(line))
		}
		v, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil {
			return 0, 0, vend.Errorf(ErrProcFormat, "status: %q", bytes.TrimSpace(line))
		}
		*dst = v << 10
	}
	return rss, peak, nil
}

// PIDsByName returns the processes whose command name (/proc/<pid>/comm)
// is comm, in /proc order; the kernel keeps only the first 15 bytes of a
// name, so a longer comm is compared by those. Processes that exit while
// being listed are left out. It returns the error of reading /proc.
func PIDsByName(comm string) ([]int, error) {
	if len(comm) > 15 {
		comm = comm[:15]
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("simdev: %w", err)
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid <= 0 {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/comm")
		if err != nil {
			continue
		}
		if string(bytes.TrimSuffix(b, []byte("\n"))) == comm {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// PIDs returns a function for [NewSampler] that always watches pids.
func PIDs(pids ...int) func() []int {
	return func() []int { return pids }
}

// Usage is what a [Sampler] measured over its window, summed over the
// processes it watched.
type Usage struct {
	Window     time.Duration // first sample to last
	Samples    int           // samples taken, from the first that found a process
	Procs      int           // distinct processes seen
	CPU        time.Duration // CPU time used in the window
	CPUPercent float64       // CPU / Window × 100: 100 is one core busy
	MeanRSS    uint64        // mean over the samples of the summed resident set, bytes
	PeakRSS    uint64        // largest summed resident set of a sample, bytes
	MaxHWM     uint64        // largest VmHWM of any one process, bytes (its peak even between samples)
}

// procKey names a process across PID reuse.
type procKey struct {
	pid   int
	start uint64
}

type procTrack struct {
	base, last time.Duration // CPU time at the window start (or 0) and at the last sample
}

// Sampler reads the CPU time and memory of a changing set of processes
// every interval, from [NewSampler] until [Sampler.Stop].
type Sampler struct {
	pids     func() []int
	interval time.Duration
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
	stopped  Usage

	mu        sync.Mutex
	first     time.Time
	firstBoot time.Duration // the first sample, as time since boot (the clock of ProcStat.Start)
	last      time.Time
	procs     map[procKey]*procTrack
	samples   int
	sumRSS    uint64
	u         Usage
}

// DefaultSampleInterval is the interval of a Sampler given none.
const DefaultSampleInterval = 500 * time.Millisecond

// NewSampler takes a first sample of the processes pids returns, then one
// every interval (DefaultSampleInterval when not positive) on its own
// goroutine until [Sampler.Stop], which the caller must call. pids is
// called at each sample, so the set may change (PostgreSQL backends come
// and go; see [PIDsByName]); it should return promptly. A PID that cannot
// be read (the process exited since the listing) is skipped; a process
// that vanishes keeps the CPU time it had at its last sample, and one that
// started after the first sample counts all its CPU time. CPU used between
// a process's last sample and its exit is not seen. A PID reused by a new
// process counts as another process.
func NewSampler(pids func() []int, interval time.Duration) *Sampler {
	if interval <= 0 {
		interval = DefaultSampleInterval
	}
	s := &Sampler{pids: pids, interval: interval, stop: make(chan struct{}), done: make(chan struct{}), procs: map[procKey]*procTrack{}}
	s.sample()
	go s.run()
	return s
}

func (s *Sampler) run() {
	defer close(s.done)
	t := time.NewTicker(s.interval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			s.sample()
		}
	}
}

// Stop ends the sampling, takes a last sample and returns the usage over
// the window. Later calls return the same Usage.
func (s *Sampler) Stop() Usage {
	s.stopOnce.Do(func() {
		close(s.stop)
		<-s.done
		s.sample()
		s.stopped = s.Usage()
	})
	return s.stopped
}

// Usage returns the usage so far; it may be called while sampling.
func (s *Sampler) Usage() Usage {
	s.mu.Lock()
	defer s.mu.Unlock()
	u := s.u
	u.Procs, u.Samples = len(s.procs), s.samples
	if s.samples > 0 {
		u.Window = s.last.Sub(s.first)
		u.MeanRSS = s.sumRSS / uint64(s.samples)
	}
	for _, p := range s.procs {
		u.CPU += p.last - p.base
	}
	if u.Window > 0 {
		u.CPUPercent = 100 * u.CPU.Seconds() / u.Window.Seconds()
	}
	return u
}

func (s *Sampler) sample() {
	pids := s.pids()
	boot, bootErr := sinceBoot()
	now := time.Now()
	stats := make([]ProcStat, 0, len(pids))
	for _, pid := range pids {
		if ps, err := ReadProc(pid); err == nil {
			stats = append(stats, ps)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(stats) == 0 && s.samples == 0 {
		return // the window opens with the first process seen
	}
	if s.samples == 0 {
		s.first = now
		if bootErr == nil {
			s.firstBoot = boot
		}
	}
	s.samples++
	s.last = now
	var rss uint64
	for _, ps := range stats {
		rss += ps.RSS
		s.u.MaxHWM = max(s.u.MaxHWM, ps.PeakRSS)
		k := procKey{ps.PID, ps.Start}
		p := s.procs[k]
		if p == nil {
			p = &procTrack{base: ps.CPU}
			// Started after the window opened: all its CPU is in the window.
			if s.firstBoot > 0 && time.Duration(ps.Start)*clockTick() >= s.firstBoot {
				p.base = 0
			}
			s.procs[k] = p
		}
		p.last = ps.CPU
	}
	s.sumRSS += rss
	s.u.PeakRSS = max(s.u.PeakRSS, rss)
}

// sinceBoot reads the time since boot from /proc/uptime ("12345.67 …").
func sinceBoot() (time.Duration, error) {
	b, err := os.ReadFile("/proc/uptime")
	if err != nil {
		return 0, fmt.Errorf("simdev: %w", err)
	}
	f := bytes.Fields(b)
	if len(f) == 0 {
		return 0, vend.Errorf(ErrProcFormat, "uptime: %q", b)
	}
	sec, err := strconv.ParseFloat(string(f[0]), 64)
	if err != nil {
		return 0, vend.Errorf(ErrProcFormat, "uptime: %q", b)
	}
	return time.Duration(sec * float64(time.Second)), nil
}
