package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

func writeJSONFile(name string, results []Result, array bool) error {
	var v any = results
	if !array && len(results) == 1 {
		v = results[0]
	}
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(name, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("--json: %w", err)
	}
	return nil
}

// writeTable prints the results as a Markdown table.
func writeTable(w io.Writer, rs []Result, info Info) error {
	var b strings.Builder
	if info.HostCPUs > 0 {
		pacing := "unpaced (each frame's packets back to back)"
		if info.Pacing > 0 {
			pacing = fmt.Sprintf("paced like libwebrtc at %.1fx its bit rate (40 ms bursts)", info.Pacing)
		}
		fmt.Fprintf(&b, "Material: H.264 1280x720 30 fps, %.0f kbit/s, %.1f RTP packets/frame (%.0f video + %.0f audio packets/s per stream), %s; host: %d CPUs.\n\n",
			info.VideoKbps, info.PacketsPerFrame, info.VideoPPS, info.AudioPPS, pacing, info.HostCPUs)
	}
	b.WriteString("| streams | connected | frames sent | frames received | frames lost (ramp-up / hold / ramp-down) | latency p50 / p95 / p99 ms | gateway's own p99 ms (max) | gateway CPU % of a core, per stream (total) | gateway ns/packet | RSS MB per stream (total) | loadgen CPU % | host busy % |\n")
	b.WriteString("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rs {
		fmt.Fprintf(&b, "| %d | %d | %d | %d | %d (%d / %d / %d) | %.2f / %.2f / %.2f | %s | %s | %s | %s | %.0f | %.0f |\n",
			r.Streams, r.Connected, r.FramesSentAfterKeyframe, r.FramesReceived, r.FramesLost,
			r.LostInRampUp, r.LostInHold, r.LostInRampDown,
			r.LatencyMs.P50, r.LatencyMs.P95, r.LatencyMs.P99,
			orDash(r.GatewayLatencyP99Ms > 0, fmt.Sprintf("%.2f", r.GatewayLatencyP99Ms)),
			orDash(r.CPUPercentPerStream > 0, cpuCell(r)),
			orDash(r.GatewayNsPerPacket > 0, fmt.Sprintf("%.0f", r.GatewayNsPerPacket)),
			orDash(r.RSSMB > 0, fmt.Sprintf("%.2f (%.1f)", r.RSSMBPerStream, r.RSSMB)),
			r.LoadgenCPUPercent, r.HostCPUBusyPercent)
	}
	b.WriteString("\nframes sent = from each stream's first frame at the sink on; lost = sent but never received; latency = publisher's last RTP packet of a frame written -> FLV tag received by the sink, over the hold; CPU and RSS are the gateway's with its child processes (transcoders) if any; RSS per stream = (peak VmRSS in the hold - VmRSS before the first stream) / streams.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func cpuCell(r Result) string {
	s := fmt.Sprintf("%.3f (%.1f)", r.CPUPercentPerStream, r.CPUPercent)
	if r.GatewayChildren > 0 {
		s += fmt.Sprintf(" incl. %d child processes: %.1f", r.GatewayChildren, r.ChildrenCPUPercent)
	}
	return s
}

func orDash(ok bool, s string) string {
	if ok {
		return s
	}
	return "-"
}

// plotSVG draws gateway CPU % per stream (left axis) and latency p99
// (right axis) against the stream count (log scale when it spans more than
// a factor of 10), by hand.
func plotSVG(rs []Result) string {
	const (
		W, H                  = 720.0, 420.0
		left, right, top, bot = 70.0, 70.0, 50.0, 60.0
		pw, ph                = W - left - right, H - top - bot
	)
	minN, maxN := math.Inf(1), math.Inf(-1)
	maxCPU, maxLat := 0.0, 0.0
	for _, r := range rs {
		n := float64(r.Streams)
		minN, maxN = math.Min(minN, n), math.Max(maxN, n)
		maxCPU = math.Max(maxCPU, r.CPUPercentPerStream)
		maxLat = math.Max(maxLat, r.LatencyMs.P99)
	}
	logX := maxN/minN > 10
	xOf := func(n float64) float64 {
		if maxN == minN {
			return left + pw/2
		}
		if logX {
			return left + (math.Log(n)-math.Log(minN))/(math.Log(maxN)-math.Log(minN))*pw
		}
		return left + (n-minN)/(maxN-minN)*pw
	}
	cpuTop, cpuStep := niceAxis(maxCPU)
	latTop, latStep := niceAxis(maxLat)
	yCPU := func(v float64) float64 { return top + ph - v/cpuTop*ph }
	yLat := func(v float64) float64 { return top + ph - v/latTop*ph }

	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%.0f" height="%.0f" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%.0f" y="24" text-anchor="middle" font-size="15" font-weight="bold">castbridge: gateway CPU per stream and latency p99 against streams</text>`+"\n", W/2)
	// grid and left axis (CPU)
	for v := 0.0; v <= cpuTop+cpuStep/1e6; v += cpuStep {
		y := yCPU(v)
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", left, y, left+pw, y)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end" fill="#1f5fbf">%s</text>`+"\n", left-6, y+4, fmtTick(v, cpuStep))
	}
	// right axis (latency)
	for v := 0.0; v <= latTop+latStep/1e6; v += latStep {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" fill="#c0392b">%s</text>`+"\n", left+pw+6, yLat(v)+4, fmtTick(v, latStep))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
	// x ticks at the measured counts
	for _, r := range rs {
		x := xOf(float64(r.Streams))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#444"/>`+"\n", x, top+ph, x, top+ph+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x, top+ph+19, r.Streams)
	}
	scale := ""
	if logX {
		scale = " (log scale)"
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">streams%s</text>`+"\n", left+pw/2, H-18, scale)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle" fill="#1f5fbf">gateway CPU per stream (%% of one core)</text>`+"\n", top+ph/2)
	fmt.Fprintf(&b, `<text transform="translate(%.1f %.1f) rotate(90)" text-anchor="middle" fill="#c0392b">latency p99 (ms)</text>`+"\n", W-16, top+ph/2)
	series := func(color string, y func(Result) float64, label func(Result) string, dash string) {
		var pts []string
		for _, r := range rs {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", xOf(float64(r.Streams)), y(r)))
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), color, dash)
		for _, r := range rs {
			x, yy := xOf(float64(r.Streams)), y(r)
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", x, yy, color)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-size="11" fill="%s">%s</text>`+"\n", x, yy-8, color, label(r))
		}
	}
	series("#1f5fbf", func(r Result) float64 { return yCPU(r.CPUPercentPerStream) },
		func(r Result) string { return fmt.Sprintf("%.2f%%", r.CPUPercentPerStream) }, "")
	series("#c0392b", func(r Result) float64 { return yLat(r.LatencyMs.P99) },
		func(r Result) string { return fmt.Sprintf("%.1f ms", r.LatencyMs.P99) }, ` stroke-dasharray="6 4"`)
	// legend
	lx, ly := left+10, top+14
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#1f5fbf" stroke-width="2"/><text x="%.1f" y="%.1f">CPU %% of one core per stream</text>`+"\n", lx, ly, lx+24, ly, lx+30, ly+4)
	fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#c0392b" stroke-width="2" stroke-dasharray="6 4"/><text x="%.1f" y="%.1f">latency p99, publisher send to RTMP sink</text>`+"\n", lx, ly+18, lx+24, ly+18, lx+30, ly+22)
	b.WriteString("</svg>\n")
	return b.String()
}

// niceAxis returns an axis top of at least v (never zero) and a tick step,
// 4 to 10 ticks, steps of 1, 2 or 5 times a power of ten.
func niceAxis(v float64) (top, step float64) {
	if v <= 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return 1, 0.2
	}
	raw := v / 5
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	switch f := raw / p; {
	case f <= 1:
		step = p
	case f <= 2:
		step = 2 * p
	case f <= 5:
		step = 5 * p
	default:
		step = 10 * p
	}
	top = math.Ceil(v/step) * step
	if top < v*1.05 {
		top += step
	}
	return top, step
}

func fmtTick(v, step float64) string {
	d := 0
	if step < 1 {
		d = int(math.Ceil(-math.Log10(step)))
	}
	return fmt.Sprintf("%.*f", d, v)
}
