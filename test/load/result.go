package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
)

// Result is one scenario run. Fields that do not apply to a scenario are
// zero and left out of the JSON.
type Result struct {
	Scenario string  `json:"scenario"`
	Impl     string  `json:"impl,omitempty"`
	Round    int     `json:"round,omitempty"`
	Seconds  float64 `json:"seconds"`

	// echo
	Clients    int     `json:"clients,omitempty"`
	Size       int     `json:"size,omitempty"`
	Window     int     `json:"window,omitempty"`
	Msgs       int64   `json:"msgs,omitempty"`
	MsgsPerSec float64 `json:"msgs_per_sec,omitempty"`
	Verified   int64   `json:"verified,omitempty"`
	Mismatched int64   `json:"mismatched"`

	// broadcast
	Receivers        int     `json:"receivers,omitempty"`
	Count            int     `json:"count,omitempty"`
	Deliveries       int64   `json:"deliveries,omitempty"`
	DeliveriesPerSec float64 `json:"deliveries_per_sec,omitempty"`
	Lost             int64   `json:"lost"`
	Duplicated       int64   `json:"duplicated"`
	OutOfOrder       int64   `json:"out_of_order"`
	WorstClient      string  `json:"worst_client,omitempty"` // "lost/dup/ooo" of the receiver with most problems

	// recover: bytes the recovering client received (frames as on the wire)
	Bytes int64 `json:"bytes,omitempty"`

	// echo and broadcast: bytes the clients read and wrote at their sockets
	// while measuring, and per message (echo: both ways per round trip;
	// broadcast: read per delivery)
	WireRead        int64   `json:"wire_read,omitempty"`
	WireWritten     int64   `json:"wire_written,omitempty"`
	WireBytesPerMsg float64 `json:"wire_bytes_per_msg,omitempty"`

	// latency (echo: round trip; broadcast: send to delivery), µs
	P50 float64 `json:"p50_us,omitempty"`
	P90 float64 `json:"p90_us,omitempty"`
	P99 float64 `json:"p99_us,omitempty"`
	Max float64 `json:"max_us,omitempty"`

	// publish: from a publish's send to its answer (a cluster answers once
	// the publish is confirmed), µs
	AnswerP50 float64 `json:"answer_p50_us,omitempty"`
	AnswerP99 float64 `json:"answer_p99_us,omitempty"`

	// connections
	Conns         int     `json:"conns,omitempty"`
	Connected     int     `json:"connected,omitempty"`
	ConnectPerSec float64 `json:"connect_per_sec,omitempty"`
	RSSBaseKiB    int64   `json:"rss_base_kib,omitempty"`
	RSSKiB        int64   `json:"rss_kib,omitempty"`
	KiBPerConn    float64 `json:"kib_per_conn,omitempty"`
	Sample        int     `json:"sample,omitempty"`
	SampleOK      int     `json:"sample_ok,omitempty"`

	// server process, when known
	ServerCPUms  float64 `json:"server_cpu_ms,omitempty"`
	CPUPerMsgUs  float64 `json:"server_cpu_us_per_msg,omitempty"`
	ServerRSSKiB int64   `json:"server_rss_kib,omitempty"`

	Errors []string `json:"errors,omitempty"`
}

// OK says whether the run was clean: nothing lost, duplicated, reordered,
// corrupted or failed.
func (r *Result) OK() bool {
	return r.Mismatched == 0 && r.Lost == 0 && r.Duplicated == 0 && r.OutOfOrder == 0 &&
		len(r.Errors) == 0 && r.SampleOK == r.Sample && r.Connected == r.Conns
}

func (r *Result) wireBytes(read, written, msgs int64) {
	r.WireRead, r.WireWritten = read, written
	if msgs > 0 {
		r.WireBytesPerMsg = float64(read+written) / float64(msgs)
	}
}

func (r *Result) addErr(format string, args ...any) {
	if len(r.Errors) < 20 {
		r.Errors = append(r.Errors, fmt.Sprintf(format, args...))
	}
}

// latencies summarises round-trip or delivery times.
func (r *Result) latencies(ns []int64) {
	if len(ns) == 0 {
		return
	}
	slices.Sort(ns)
	at := func(q float64) float64 {
		i := int(q * float64(len(ns)-1))
		return float64(ns[i]) / 1e3
	}
	r.P50, r.P90, r.P99, r.Max = at(0.50), at(0.90), at(0.99), float64(ns[len(ns)-1])/1e3
}

// answers sets the publish answers' latency percentiles from ns.
func (r *Result) answers(ns []int64) {
	if len(ns) == 0 {
		return
	}
	slices.Sort(ns)
	r.AnswerP50 = float64(ns[(len(ns)-1)/2]) / 1e3
	r.AnswerP99 = float64(ns[int(0.99*float64(len(ns)-1))]) / 1e3
}

func (r *Result) writeJSON(w io.Writer) {
	b, _ := json.Marshal(r)
	fmt.Fprintf(w, "%s\n", b)
}

// printResults prints one row per result.
func printResults(w io.Writer, rs []*Result) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	for i, r := range rs {
		switch r.Scenario {
		case "echo", "http":
			if i == 0 || rs[i-1].Scenario != r.Scenario {
				fmt.Fprintln(tw, "impl\tclients\tsize\twindow\tmsgs\tmsgs/s\tp50 µs\tp90 µs\tp99 µs\tmax µs\tsrv µs/msg\tverified\tmismatched\t")
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.0f\t%.2f\t%d\t%d\t\n",
				r.Impl, r.Clients, r.Size, r.Window, r.Msgs, r.MsgsPerSec, r.P50, r.P90, r.P99, r.Max, r.CPUPerMsgUs, r.Verified, r.Mismatched)
		case "broadcast":
			if i == 0 || rs[i-1].Scenario != r.Scenario {
				fmt.Fprintln(tw, "impl\treceivers\tcount\tsize\tdeliveries\tdeliv/s\tp50 µs\tp99 µs\tmax µs\tsrv µs/deliv\tlost\tdup\tooo\t")
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t%.2f\t%d\t%d\t%d\t\n",
				r.Impl, r.Receivers, r.Count, r.Size, r.Deliveries, r.DeliveriesPerSec, r.P50, r.P99, r.Max, r.CPUPerMsgUs, r.Lost, r.Duplicated, r.OutOfOrder)
		case "connections":
			if i == 0 || rs[i-1].Scenario != r.Scenario {
				fmt.Fprintln(tw, "impl\tconns\tconnected\tconn/s\tsrv RSS before KiB\tafter KiB\tKiB/conn\tsample ok\t")
			}
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.0f\t%d\t%d\t%.1f\t%d/%d\t\n",
				r.Impl, r.Conns, r.Connected, r.ConnectPerSec, r.RSSBaseKiB, r.RSSKiB, r.KiBPerConn, r.SampleOK, r.Sample)
		}
	}
	_ = tw.Flush()
	for _, r := range rs {
		for _, e := range r.Errors {
			fmt.Fprintf(w, "%s %s: %s\n", r.Impl, r.Scenario, e)
		}
	}
}
