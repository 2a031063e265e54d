package clusterfault

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"beaconvend/cloud/internal/childproc"
)

func mrandN(n int) int { return rand.IntN(n) }

// parallelErr runs f(0..n-1) with at most k at once and returns the first
// error.
func parallelErr(n, k int, f func(i int) error) error {
	sem := make(chan struct{}, k)
	var mu sync.Mutex
	var first error
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := f(i); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return first
}

func waitAccepting(addr string, p *childproc.Proc, within time.Duration) error {
	for deadline := time.Now().Add(within); ; time.Sleep(20 * time.Millisecond) {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			return c.Close()
		}
		if (p != nil && !p.Running()) || time.Now().After(deadline) {
			out := ""
			if p != nil {
				out = p.Tail(2000)
			}
			return fmt.Errorf("clusterfault: nothing accepting on %s; output:\n%s", addr, out)
		}
	}
}
