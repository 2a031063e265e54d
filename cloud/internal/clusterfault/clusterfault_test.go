package clusterfault

import (
	"bufio"
	"net"
	"testing"
	"time"
)

func TestOutages(t *testing.T) {
	t0 := time.Now()
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	tries := []try{
		{At: at(0), End: at(100), OK: true, Code: "ok"},
		{At: at(1500), End: at(1600), Code: "machine.busy"}, // a business answer: not an outage
		{At: at(2000), End: at(2100), OK: true, Code: "ok"},
		{At: at(3000), End: at(3200), Code: "transport"}, // kill 0 at 2.5: first failure
		{At: at(3500), End: at(3600), Code: "device.offline"},
		{At: at(4000), End: at(4100), OK: true, Code: "ok"},   // first success after it: 1.1 s
		{At: at(10500), End: at(14000), OK: true, Code: "ok"}, // kill 2 at 10: blocked 3.5 s
		{At: at(11000), End: at(11300), OK: true, Code: "ok"}, // ends the outage: 0.8 s
	}
	kills := []Kill{{What: "broker", At: at(2500)}, {What: "db", At: at(6000)}, {What: "cloud", At: at(10000)}, {What: "skipped", At: at(12000), Skipped: "no"}}
	outages(kills, tries)
	if kills[0].Stopped != 1100*time.Millisecond || kills[0].Failed != 2 {
		t.Errorf("broker kill: stopped %s failed %d, want 1.1s 2", kills[0].Stopped, kills[0].Failed)
	}
	if kills[1].Stopped != 0 || kills[1].Failed != 0 {
		t.Errorf("db kill: stopped %s failed %d, want 0 0", kills[1].Stopped, kills[1].Failed)
	}
	if kills[2].Stopped != 800*time.Millisecond || kills[2].Failed != 1 {
		t.Errorf("cloud kill: stopped %s failed %d, want 0.8s 1", kills[2].Stopped, kills[2].Failed)
	}
}

// echo serves line echo on loopback with a tag.
func echo(t *testing.T, tag string) net.Listener {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := c.Write([]byte(tag + sc.Text() + "\n")); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln
}

func TestBalancerSkipsADeadBackend(t *testing.T) {
	a, b := echo(t, "a:"), echo(t, "b:")
	defer b.Close()
	lb, err := newBalancer([]string{a.Addr().String(), b.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	defer lb.Close()
	ask := func() string {
		c, err := net.DialTimeout("tcp", lb.Addr(), time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		c.Write([]byte("x\n"))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return "closed"
		}
		return line
	}
	seen := map[string]bool{ask(): true, ask(): true}
	if !seen["a:x\n"] || !seen["b:x\n"] {
		t.Fatalf("two connections reached %v, want both backends", seen)
	}
	a.Close() // a dies: every new connection goes to b
	for range 4 {
		if got := ask(); got != "b:x\n" {
			t.Fatalf("with a down got %q, want b", got)
		}
	}
}
