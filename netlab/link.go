package netlab

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Link is the shaping of one host's link (or of a trunk between zones). The zero
// Link is an unshaped veth: as fast as the CPU copies.
type Link struct {
	Rate   uint64        // bits per second; 0: unlimited
	Delay  time.Duration // one-way delay added to what the host sends
	Jitter time.Duration // random variation of Delay (netem's jitter); needs Delay
	Loss   float64       // percent of the packets the host sends that are dropped, 0..100
}

// ParseLink parses a link spec such as "rate=1gbit,delay=0.5ms,jitter=0.1ms,loss=0.1%":
// comma-separated key=value pairs, every key optional. Rates take tc's units (bit,
// kbit, mbit, gbit, decimal: 1gbit is 1e9 bits/s), delays Go's durations, loss a
// percentage (the % sign optional). An empty spec is the unshaped link.
func ParseLink(spec string) (Link, error) {
	var l Link
	if strings.TrimSpace(spec) == "" {
		return l, nil
	}
	for _, kv := range strings.Split(spec, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return l, fmt.Errorf("%w: %q: want key=value (rate, delay, jitter, loss)", ErrBadLink, kv)
		}
		var err error
		switch k {
		case "rate":
			l.Rate, err = parseRate(v)
		case "delay":
			l.Delay, err = parseDelay(v)
		case "jitter":
			l.Jitter, err = parseDelay(v)
		case "loss":
			l.Loss, err = strconv.ParseFloat(strings.TrimSuffix(v, "%"), 64)
			if err == nil && (l.Loss < 0 || l.Loss > 100) {
				err = fmt.Errorf("want a percentage 0..100")
			}
		default:
			return l, fmt.Errorf("%w: unknown key %q: want rate, delay, jitter or loss", ErrBadLink, k)
		}
		if err != nil {
			return l, fmt.Errorf("%w: %s=%q: %v", ErrBadLink, k, v, err)
		}
	}
	if l.Jitter > 0 && l.Delay == 0 {
		return l, fmt.Errorf("%w: jitter %v without a delay", ErrBadLink, l.Jitter)
	}
	return l, nil
}

func parseDelay(v string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err == nil && d < 0 {
		err = fmt.Errorf("negative")
	}
	return d, err
}

var rateUnits = []struct {
	suffix string
	mult   float64
}{{"gbit", 1e9}, {"mbit", 1e6}, {"kbit", 1e3}, {"bit", 1}}

func parseRate(v string) (uint64, error) {
	s := strings.ToLower(strings.TrimSpace(v))
	for _, u := range rateUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			f, err := strconv.ParseFloat(num, 64)
			if err != nil || f <= 0 {
				return 0, fmt.Errorf("want a positive number before %s", u.suffix)
			}
			return uint64(f * u.mult), nil
		}
	}
	return 0, fmt.Errorf("want a rate such as 100mbit, 1gbit or 10gbit")
}

// String is the link as ParseLink reads it, or "unshaped".
func (l Link) String() string {
	var parts []string
	if l.Rate > 0 {
		parts = append(parts, "rate="+formatRate(l.Rate))
	}
	if l.Delay > 0 {
		parts = append(parts, "delay="+l.Delay.String())
	}
	if l.Jitter > 0 {
		parts = append(parts, "jitter="+l.Jitter.String())
	}
	if l.Loss > 0 {
		parts = append(parts, "loss="+strconv.FormatFloat(l.Loss, 'g', -1, 64)+"%")
	}
	if len(parts) == 0 {
		return "unshaped"
	}
	return strings.Join(parts, ",")
}

func formatRate(r uint64) string {
	for _, u := range rateUnits {
		if float64(r) >= u.mult && float64(r)/u.mult == float64(uint64(float64(r)/u.mult)) {
			return strconv.FormatUint(r/uint64(u.mult), 10) + u.suffix
		}
	}
	return strconv.FormatUint(r, 10) + "bit"
}

// GBps is the link's rate in gigabytes (1e9 bytes) per second, the unit of the
// all-reduce benchmark's bandwidths; 0 for an unlimited link.
func (l Link) GBps() float64 { return float64(l.Rate) / 8 / 1e9 }

// shapeCmds are the tc commands (after "tc", with tcArgs such as -n NS before
// "qdisc") that shape one end of a link, dev: a token bucket (tbf) for the rate at
// the root, and under it netem for the delay, jitter and loss, which the sending end
// (send) alone gets. nil means the end is not shaped at all.
//
// The bucket holds at least 128 KiB (more than a GSO packet, which tbf would
// otherwise split) or 4 ms of the rate, and queues up to 20 ms of it: enough for TCP
// to fill the link without standing in for a delay it does not have.
func (l Link) shapeCmds(dev string, tcArgs []string, send bool) [][]string {
	var netem []string
	if send && l.Delay > 0 {
		netem = append(netem, "delay", usec(l.Delay))
		if l.Jitter > 0 {
			netem = append(netem, usec(l.Jitter), "distribution", "normal")
		}
	}
	if send && l.Loss > 0 {
		netem = append(netem, "loss", strconv.FormatFloat(l.Loss, 'f', -1, 64)+"%")
	}
	qdisc := func(args ...string) []string {
		return append(append(append([]string{"tc"}, tcArgs...), "qdisc", "replace", "dev", dev), args...)
	}
	var cmds [][]string
	parent := []string{"root"}
	if l.Rate > 0 {
		burst := max(uint64(128<<10), l.Rate/8/250)
		cmds = append(cmds, qdisc("root", "handle", "1:", "tbf", "rate", strconv.FormatUint(l.Rate, 10)+"bit",
			"burst", strconv.FormatUint(burst, 10), "latency", "20ms"))
		parent = []string{"parent", "1:1"}
	}
	if len(netem) > 0 {
		// netem's default queue of 1000 packets drops at high rates with delay.
		cmds = append(cmds, qdisc(append(append(parent, "handle", "10:", "netem"), append(netem, "limit", "100000")...)...))
	}
	return cmds
}

// needsNetem reports whether the sending end of the link needs sch_netem.
func (l Link) needsNetem() bool { return l.Delay > 0 || l.Loss > 0 }

func usec(d time.Duration) string { return strconv.FormatInt(d.Microseconds(), 10) + "us" }
