package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// metric is one number of a row, extracted from each run.
type metric struct {
	name string
	get  func(*Result) float64
}

func metricsOf(scenario string) []metric {
	switch scenario {
	case "echo", "http":
		return []metric{
			{"msgs/s", func(r *Result) float64 { return r.MsgsPerSec }},
			{"p50 µs", func(r *Result) float64 { return r.P50 }},
			{"p90 µs", func(r *Result) float64 { return r.P90 }},
			{"p99 µs", func(r *Result) float64 { return r.P99 }},
			{"max µs", func(r *Result) float64 { return r.Max }},
			{"server CPU µs/msg", func(r *Result) float64 { return r.CPUPerMsgUs }},
			{"wire bytes/msg (both ways)", func(r *Result) float64 { return r.WireBytesPerMsg }},
		}
	case "broadcast":
		return []metric{
			{"deliveries/s", func(r *Result) float64 { return r.DeliveriesPerSec }},
			{"p50 µs", func(r *Result) float64 { return r.P50 }},
			{"p99 µs", func(r *Result) float64 { return r.P99 }},
			{"server CPU µs/delivery", func(r *Result) float64 { return r.CPUPerMsgUs }},
			{"wire bytes/delivery", func(r *Result) float64 { return r.WireBytesPerMsg }},
		}
	case "publish":
		return []metric{
			{"deliveries/s", func(r *Result) float64 { return r.DeliveriesPerSec }},
			{"p50 µs", func(r *Result) float64 { return r.P50 }},
			{"p99 µs", func(r *Result) float64 { return r.P99 }},
			{"server CPU µs/delivery", func(r *Result) float64 { return r.CPUPerMsgUs }},
			{"publish answered p50 µs", func(r *Result) float64 { return r.AnswerP50 }},
			{"publish answered p99 µs", func(r *Result) float64 { return r.AnswerP99 }},
		}
	case "publish-latency":
		return []metric{
			{"p50 µs", func(r *Result) float64 { return r.P50 }},
			{"p90 µs", func(r *Result) float64 { return r.P90 }},
			{"p99 µs", func(r *Result) float64 { return r.P99 }},
			{"max µs", func(r *Result) float64 { return r.Max }},
			{"deliveries", func(r *Result) float64 { return float64(r.Deliveries) }},
			{"publish answered p50 µs", func(r *Result) float64 { return r.AnswerP50 }},
			{"publish answered p99 µs", func(r *Result) float64 { return r.AnswerP99 }},
		}
	case "recover":
		return []metric{
			{"catch-up ms", func(r *Result) float64 { return r.Seconds * 1e3 }},
			{"msgs/s", func(r *Result) float64 { return r.DeliveriesPerSec }},
			{"bytes received", func(r *Result) float64 { return float64(r.Bytes) }},
			{"bytes/msg", func(r *Result) float64 { return float64(r.Bytes) / float64(max(r.Count, 1)) }},
			{"server CPU ms", func(r *Result) float64 { return r.ServerCPUms }},
		}
	case "cluster-connections":
		return []metric{
			{"server KiB/conn", func(r *Result) float64 { return r.KiBPerConn }},
			{"server RSS KiB, no connections", func(r *Result) float64 { return float64(r.RSSBaseKiB) }},
			{"server RSS KiB, all connected", func(r *Result) float64 { return float64(r.RSSKiB) }},
			{"connects/s (each node's client)", func(r *Result) float64 { return r.ConnectPerSec }},
		}
	case "connections":
		return []metric{
			{"server KiB/conn", func(r *Result) float64 { return r.KiBPerConn }},
			{"connects/s", func(r *Result) float64 { return r.ConnectPerSec }},
			{"server RSS KiB", func(r *Result) float64 { return float64(r.RSSKiB) }},
		}
	}
	return nil
}

// stats is median, min and max of one metric over the rounds.
type stats struct{ med, lo, hi float64 }

func summarise(v []float64) stats {
	if len(v) == 0 {
		return stats{}
	}
	v = slices.Clone(v)
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return stats{med: med, lo: v[0], hi: v[len(v)-1]}
}

func num(x float64) string {
	switch {
	case x >= 1000:
		return commas(fmt.Sprintf("%.0f", x))
	case x >= 100:
		return fmt.Sprintf("%.0f", x)
	case x >= 10:
		return fmt.Sprintf("%.1f", x)
	default:
		return fmt.Sprintf("%.2f", x)
	}
}

func commas(s string) string {
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// printComparison prints a Markdown table: per row and metric, each
// implementation's median (min–max), and the first implementation's median
// divided by each other's.
func printComparison(w io.Writer, rows []row, names []string, results map[string]map[string][]*Result) {
	fmt.Fprintf(w, "| scenario | metric |")
	for _, n := range names {
		fmt.Fprintf(w, " %s |", n)
	}
	for _, n := range names[1:] {
		fmt.Fprintf(w, " %s/%s |", names[0], n)
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|---|", strings.Repeat("---:|", 2*len(names)-1), "\n")
	for _, rw := range rows {
		byImpl := results[rw.label]
		for _, m := range metricsOf(rw.scenario) {
			fmt.Fprintf(w, "| %s | %s |", rw.label, m.name)
			meds := make([]float64, len(names))
			for i, n := range names {
				var v []float64
				for _, r := range byImpl[n] {
					v = append(v, m.get(r))
				}
				s := summarise(v)
				meds[i] = s.med
				fmt.Fprintf(w, " %s (%s–%s) |", num(s.med), num(s.lo), num(s.hi))
			}
			for i := range names[1:] {
				if meds[i+1] == 0 {
					fmt.Fprint(w, " – |")
					continue
				}
				fmt.Fprintf(w, " %.2f× |", meds[0]/meds[i+1])
			}
			fmt.Fprintln(w)
		}
		// Correctness over every run of the row.
		fmt.Fprintf(w, "| %s | %s |", rw.label, correctnessLabel(rw.scenario))
		for _, n := range names {
			fmt.Fprintf(w, " %s |", correctness(rw.scenario, byImpl[n]))
		}
		fmt.Fprint(w, strings.Repeat(" |", len(names)-1), "\n")
	}
}

func correctnessLabel(scenario string) string {
	switch scenario {
	case "echo", "http":
		return "mismatched / errors (all runs)"
	case "broadcast", "publish", "publish-latency", "recover":
		return "lost / dup / out-of-order / errors (all runs)"
	}
	return "sample echoed / connected / errors (all runs)"
}

func correctness(scenario string, rs []*Result) string {
	var lost, dup, ooo, bad, errs, ok, sample, connected, conns int64
	for _, r := range rs {
		lost += r.Lost
		dup += r.Duplicated
		ooo += r.OutOfOrder
		bad += r.Mismatched
		errs += int64(len(r.Errors))
		ok += int64(r.SampleOK)
		sample += int64(r.Sample)
		connected += int64(r.Connected)
		conns += int64(r.Conns)
	}
	switch scenario {
	case "echo", "http":
		return fmt.Sprintf("%d / %d", bad, errs)
	case "broadcast", "publish", "publish-latency", "recover":
		return fmt.Sprintf("%d / %d / %d / %d", lost, dup, ooo, errs+bad)
	}
	return fmt.Sprintf("%d of %d / %d of %d / %d", ok, sample, connected, conns, errs)
}
