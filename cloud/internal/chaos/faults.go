package chaos

import (
	"context"
	"math/rand/v2"
	"sort"
	"sync"
	"syscall"
	"time"
)

// counter counts by name, safe for concurrent use.
type counter struct {
	mu sync.Mutex
	n  map[string]int
}

func newCounter() *counter { return &counter{n: map[string]int{}} }

func (c *counter) add(name string) {
	c.mu.Lock()
	c.n[name]++
	c.mu.Unlock()
}

func (c *counter) snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]int, len(c.n))
	for k, v := range c.n {
		m[k] = v
	}
	return m
}

func sortedKeys(m map[string]int) []string {
	var k []string
	for n := range m {
		k = append(k, n)
	}
	sort.Strings(k)
	return k
}

// injectFaults injects the configured faults until ctx ends: once a
// second each kind fires with probability rate/60. Link cuts overlap and
// are restored by timers; process faults run one at a time.
func injectFaults(ctx context.Context, r *rig, rates Rates, within time.Duration, rng *rand.Rand, faults *counter, errs *counter) {
	var wg sync.WaitGroup
	defer wg.Wait()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	// Each kind with a rate fires at least once, at a random moment in the
	// first two thirds of the run, so even a short run exercises all.
	t0 := time.Now()
	due := map[string]time.Duration{}
	for _, k := range []string{"link", "controller", "broker", "cloud"} {
		due[k] = time.Duration(rng.Int64N(int64(within)*2/3 + 1))
	}
	fire := func(kind string, perMin float64) bool {
		if perMin <= 0 {
			return false
		}
		if d, ok := due[kind]; ok && time.Since(t0) >= d {
			delete(due, kind)
			return true
		}
		return rng.Float64() < perMin/60
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if fire("link", rates.LinkCut) {
			d := r.devs[rng.IntN(len(r.devs))]
			if d.link.IsCut() {
				due["link"] = 0 // try another device next second
			} else {
				d.link.Cut()
				faults.add("link_cut")
				hold := time.Duration(2000+rng.IntN(43000)) * time.Millisecond
				wg.Add(1)
				go func() {
					defer wg.Done()
					sleep(ctx, hold)
					d.link.Restore()
				}()
			}
		}
		if fire("controller", rates.ControllerKill) {
			d := r.devs[rng.IntN(len(r.devs))]
			d.ctl.Kill()
			faults.add("controller_kill")
			sleep(ctx, time.Duration(1000+rng.IntN(4000))*time.Millisecond)
			if err := d.ctl.Start(); err != nil {
				errs.add("controller_restart")
			}
		}
		if fire("broker", rates.BrokerRestart) {
			if rng.IntN(2) == 0 {
				r.mosq.Kill()
				faults.add("broker_kill")
			} else {
				_ = r.mosq.Signal(syscall.SIGTERM, 10*time.Second)
				faults.add("broker_restart")
			}
			sleep(ctx, time.Duration(1000+rng.IntN(3000))*time.Millisecond)
			if err := r.startBroker(); err != nil {
				errs.add("broker_restart")
			}
		}
		if fire("cloud", rates.CloudKill) {
			r.cloud.Kill()
			faults.add("cloud_kill")
			sleep(ctx, time.Duration(500+rng.IntN(2500))*time.Millisecond)
			if err := r.startCloud(context.WithoutCancel(ctx)); err != nil {
				errs.add("cloud_restart")
			}
		}
	}
}
