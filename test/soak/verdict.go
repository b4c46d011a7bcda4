package main

import (
	"fmt"
	"io"
	"strings"
)

// criterion is one check of the soak's verdict: what the issue asks of
// the run, whether it held, and the figures that say so.
type criterion struct {
	Name   string `json:"name"`
	Pass   bool   `json:"pass"`
	Detail string `json:"detail"`
}

// verdict is the run's checks, in the order the summary prints them.
func (r *result) verdict() []criterion {
	var out []criterion
	add := func(name string, pass bool, format string, args ...any) {
		out = append(out, criterion{Name: name, Pass: pass, Detail: fmt.Sprintf(format, args...)})
	}
	rep := r.report
	if rep == nil {
		add("checker", false, "no report (the run ended early)")
	} else {
		add("0 lost", rep.Lost == 0, "%d of %d deliveries expected", rep.Lost, rep.Expected)
		add("0 duplicated", rep.Duplicated == 0, "%d", rep.Duplicated)
		add("0 reordered", rep.Reordered == 0, "%d", rep.Reordered)
		add("0 corrupted", rep.Corrupted == 0, "%d", rep.Corrupted)
		// The checker's examples under their kind's line, and the lost
		// messages in runs (which, and how many receivers lost each).
		for _, a := range rep.Examples {
			out[int(a.Kind)].Detail += "\n        " + a.String()
		}
		for _, l := range rep.LostRuns {
			out[0].Detail += "\n        run: " + l.String()
		}
		if n := rep.LostRunsTotal - len(rep.LostRuns); n > 0 {
			out[0].Detail += fmt.Sprintf("\n        (%d more runs)", n)
		}
	}
	// Every re-join recovered: one server keeps every room's history in
	// its bolt file, a cluster on every node that has the room and in
	// its grain (docs/CLUSTER.md), which survives the loss of one node.
	// A re-join not recovered leaves its gap's messages undelivered
	// (counted apart by the checker, not as lost), so it fails the run.
	detail := fmt.Sprintf("%d recovered, %d not", r.recovered, r.notRecovered)
	if r.notRecovered > 0 {
		unrec := 0
		if rep != nil {
			unrec = rep.Unrecovered
		}
		detail += fmt.Sprintf(" (last reason %q; %d messages in their gaps not given)", r.lastReason, unrec)
	}
	add("every re-join recovered", r.notRecovered == 0, "%s", detail)
	d := float64(r.rssEnd.rss-r.rssWarm.rss) / float64(max(r.rssWarm.rss, 1))
	add("server RSS within 10%", d <= rssTolerance, "%s -> %s (%+.1f%%)", mib(r.rssWarm.rss), mib(r.rssEnd.rss), 100*d)
	slack := goroutineSlack * max(r.cfg.Nodes, 1)
	add("server goroutines back", r.gorEnd <= r.gorBase+slack, "%d -> %d (slack %d)", r.gorBase, r.gorEnd, slack)
	add("soak goroutines back", r.selfEnd <= r.selfBase+goroutineSlack, "%d -> %d (slack %d)", r.selfBase, r.selfEnd, goroutineSlack)
	tc := r.traceCheck()
	add("every fault in the trace", len(tc) == 0, "%s", strings.Join(tc, "; "))
	return out
}

// failures lists the checks the result falls short of; empty: a pass.
func (r *result) failures() []string {
	var out []string
	for _, c := range r.verdict() {
		if !c.Pass {
			out = append(out, c.Name+": "+c.Detail)
		}
	}
	return out
}

// writeVerdict prints each check with PASS or FAIL, then the outcome.
func (r *result) writeVerdict(w io.Writer) {
	fmt.Fprintln(w, "verdict:")
	pass := true
	for _, c := range r.verdict() {
		mark := "PASS"
		if !c.Pass {
			mark, pass = "FAIL", false
		}
		fmt.Fprintf(w, "  %-4s  %-26s %s\n", mark, c.Name, c.Detail)
	}
	if pass {
		fmt.Fprintln(w, "PASS")
	} else {
		fmt.Fprintln(w, "FAIL")
	}
}

// outcome is what -result writes (JSON) for a caller that runs the soak
// as a process, TestSoak: the verdict and the figures it asserts on.
type outcome struct {
	Verdict   []criterion      `json:"verdict"`
	Faults    map[string]int64 `json:"faults"` // injected, by fault
	Restarts  int              `json:"restarts"`
	Recovered int64            `json:"recovered"`
	Expected  int              `json:"expected"`
	Crashes   int64            `json:"crashes"` // actor panics by Crash
	Sent      int64            `json:"sent"`
	Acked     int64            `json:"acked"`
	Summary   string           `json:"summary"`
}

func (r *result) outcome() outcome {
	o := outcome{Verdict: r.verdict(), Faults: map[string]int64{}, Restarts: len(r.restarts), Recovered: r.recovered,
		Crashes: r.serverCrashes, Sent: r.sent, Acked: r.acked}
	for f := range fault(nFaults) {
		o.Faults[f.String()] = r.faults[f]
	}
	if r.report != nil {
		o.Expected = r.report.Expected
	}
	var b strings.Builder
	r.summary(&b)
	o.Summary = b.String()
	return o
}
