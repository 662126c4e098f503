package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Side-by-side runs (scripts/bench.sh --vs) are saved one result per file,
// named <kind>_<job>_<streams>_<rep>_<server>.json: kind "pair" for runs
// made in interleaved pairs (castbridge, other, castbridge, other; a job
// with castbridge alone, such as its Opus-to-AAC transcoding, has no
// partner), kind "sat" for the saturation search (rep 1). compare reads
// them back and prints per-pair ratios, castbridge over the other server.

// saturationP99Ms is the end-to-end p99 above which a run counts as
// saturated (the mark, with any frame lost or stream not live).
const saturationP99Ms = 50

type runKey struct {
	kind, job string
	streams   int
	rep       int
	server    string
}

type sideRun struct {
	key runKey
	res Result
}

// parseRunName parses a result file's base name; ok is false for names of
// another form.
func parseRunName(base string) (runKey, bool) {
	name, found := strings.CutSuffix(base, ".json")
	if !found {
		return runKey{}, false
	}
	f := strings.Split(name, "_")
	if len(f) != 5 || (f[0] != "pair" && f[0] != "sat") || f[1] == "" || f[4] == "" {
		return runKey{}, false
	}
	n, err1 := strconv.Atoi(f[2])
	rep, err2 := strconv.Atoi(f[3])
	if err1 != nil || err2 != nil || n <= 0 || rep <= 0 {
		return runKey{}, false
	}
	return runKey{kind: f[0], job: f[1], streams: n, rep: rep, server: f[4]}, true
}

func loadRuns(dir string) ([]sideRun, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var runs []sideRun
	for _, e := range ents {
		k, ok := parseRunName(e.Name())
		if !ok {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, err
		}
		var r Result
		if err := json.Unmarshal(b, &r); err != nil {
			return nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		runs = append(runs, sideRun{key: k, res: r})
	}
	if len(runs) == 0 {
		return nil, fmt.Errorf("%s: no result files named <pair|sat>_<job>_<streams>_<rep>_<server>.json", dir)
	}
	return runs, nil
}

// saturated says why a run counts as saturated, "" if it does not.
func saturated(r Result) string {
	switch {
	case r.Connected < r.Streams:
		return fmt.Sprintf("%d of %d connected", r.Connected, r.Streams)
	case r.Live < r.Connected:
		return fmt.Sprintf("%d of %d live", r.Live, r.Connected)
	case r.FramesLost > 0:
		return fmt.Sprintf("%d frames lost", r.FramesLost)
	case r.LatencyMs.P99 > saturationP99Ms:
		return fmt.Sprintf("p99 %.1f ms", r.LatencyMs.P99)
	}
	return ""
}

// errNotSaturated is checkSaturated's answer for a run that carried its
// load (the command exits 1 on it, without a message).
var errNotSaturated = errors.New("not saturated")

// checkSaturated prints whether the run in the result file name was
// saturated, and returns errNotSaturated if it was not.
func checkSaturated(w io.Writer, name string) error {
	b, err := os.ReadFile(name)
	if err != nil {
		return fmt.Errorf("--saturated: %w", err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return fmt.Errorf("--saturated: %s: %w", name, err)
	}
	if why := saturated(r); why != "" {
		fmt.Fprintf(w, "%d streams: saturated (%s)\n", r.Streams, why)
		return nil
	}
	fmt.Fprintf(w, "%d streams: carried (p99 %.1f ms, no frame lost)\n", r.Streams, r.LatencyMs.P99)
	return errNotSaturated
}

func ratio(a, b float64) string {
	if b <= 0 || a <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", a/b)
}

// compare prints the side-by-side tables of the results in dir: the
// per-pair ratios (base server over each other server), a summary per job
// and stream count, castbridge-only jobs, and the saturation search;
// floorNs, when positive, adds the CPU per RTP packet as a multiple of the
// UDP+SRTP floor.
func compare(w io.Writer, dir, base string, floorNs float64) ([]sideRun, error) {
	runs, err := loadRuns(dir)
	if err != nil {
		return nil, err
	}
	sort.Slice(runs, func(i, j int) bool {
		a, b := runs[i].key, runs[j].key
		if a.kind != b.kind {
			return a.kind < b.kind
		}
		if a.job != b.job {
			return a.job < b.job
		}
		if a.streams != b.streams {
			return a.streams < b.streams
		}
		if a.rep != b.rep {
			return a.rep < b.rep
		}
		return a.server < b.server
	})
	type group struct {
		job          string
		streams, rep int
	}
	pairs := map[group]map[string]Result{}
	var order []group
	sat := map[string][]Result{}
	for _, r := range runs {
		k := r.key
		if k.kind == "sat" {
			sat[k.server] = append(sat[k.server], r.res)
			continue
		}
		g := group{k.job, k.streams, k.rep}
		if pairs[g] == nil {
			pairs[g] = map[string]Result{}
			order = append(order, g)
		}
		pairs[g][k.server] = r.res
	}

	var b strings.Builder
	cell := func(r Result) string {
		return fmt.Sprintf("%.3f", r.CPUPercentPerStream)
	}
	floorCell := func(r Result) string {
		if floorNs <= 0 || r.GatewayNsPerPacket <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f (%.1f×)", r.GatewayNsPerPacket, r.GatewayNsPerPacket/floorNs)
	}
	type span struct{ lo, hi float64 }
	widen := func(s *span, v float64) {
		if v <= 0 || math.IsNaN(v) {
			return
		}
		if s.lo == 0 || v < s.lo {
			s.lo = v
		}
		s.hi = max(s.hi, v)
	}
	type sumKey struct {
		job     string
		streams int
		other   string
	}
	type summary struct {
		cpu, p99, rss       span
		lostBase, lostOther int
		pairs               int
	}
	sums := map[sumKey]*summary{}
	var sumOrder []sumKey
	var solo []group

	b.WriteString("### Interleaved pairs (ratio = " + base + " / other)\n\n")
	b.WriteString("| job | streams | pair | server | CPU % of a core per stream | CPU ratio | ns per RTP packet (× floor) | latency p50 / p99 ms | p99 ratio | frames lost (of sent) | RSS MB per stream | RSS ratio | load avg before → after |\n")
	b.WriteString("| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
	for _, g := range order {
		m := pairs[g]
		br, ok := m[base]
		others := make([]string, 0, len(m))
		for s := range m {
			if s != base {
				others = append(others, s)
			}
		}
		sort.Strings(others)
		if ok && len(others) == 0 {
			solo = append(solo, g)
			continue
		}
		if !ok {
			continue
		}
		for _, o := range others {
			or := m[o]
			for i, r := range []Result{br, or} {
				name, cr, pr, rr := base, ratio(br.CPUPercentPerStream, or.CPUPercentPerStream), ratio(br.LatencyMs.P99, or.LatencyMs.P99), ratio(br.RSSMBPerStream, or.RSSMBPerStream)
				if i == 1 {
					name, cr, pr, rr = o, "", "", ""
				}
				fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %s | %s | %.2f / %.2f | %s | %d (%d) | %.2f | %s | %.2f → %.2f |\n",
					g.job, g.streams, g.rep, name, cell(r), cr, floorCell(r), r.LatencyMs.P50, r.LatencyMs.P99, pr,
					r.FramesLost, r.FramesSentAfterKeyframe, r.RSSMBPerStream, rr, r.LoadAvgBefore, r.LoadAvgAfter)
			}
			sk := sumKey{g.job, g.streams, o}
			s := sums[sk]
			if s == nil {
				s = &summary{}
				sums[sk] = s
				sumOrder = append(sumOrder, sk)
			}
			s.pairs++
			if or.CPUPercentPerStream > 0 {
				widen(&s.cpu, br.CPUPercentPerStream/or.CPUPercentPerStream)
			}
			if or.LatencyMs.P99 > 0 {
				widen(&s.p99, br.LatencyMs.P99/or.LatencyMs.P99)
			}
			if or.RSSMBPerStream > 0 {
				widen(&s.rss, br.RSSMBPerStream/or.RSSMBPerStream)
			}
			s.lostBase += br.FramesLost
			s.lostOther += or.FramesLost
		}
	}
	if len(sumOrder) > 0 {
		b.WriteString("\n### Ratios per job (" + base + " / other, lowest–highest over the pairs)\n\n")
		b.WriteString("| job | streams | other | pairs | CPU per stream | latency p99 | RSS per stream | frames lost " + base + " / other |\n")
		b.WriteString("| --- | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n")
		rng := func(s span) string {
			if s.hi == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2f–%.2f", s.lo, s.hi)
		}
		for _, sk := range sumOrder {
			s := sums[sk]
			fmt.Fprintf(&b, "| %s | %d | %s | %d | %s | %s | %s | %d / %d |\n", sk.job, sk.streams, sk.other, s.pairs,
				rng(s.cpu), rng(s.p99), rng(s.rss), s.lostBase, s.lostOther)
		}
	}
	if len(solo) > 0 {
		b.WriteString("\n### " + base + " alone (no other server runs the job here)\n\n")
		b.WriteString("| job | streams | run | CPU % of a core per stream | ns per RTP packet (× floor) | latency p50 / p99 ms | frames lost (of sent) | RSS MB per stream | load avg before → after |\n")
		b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n")
		for _, g := range solo {
			r := pairs[g][base]
			fmt.Fprintf(&b, "| %s | %d | %d | %s | %s | %.2f / %.2f | %d (%d) | %.2f | %.2f → %.2f |\n", g.job, g.streams, g.rep,
				cell(r), floorCell(r), r.LatencyMs.P50, r.LatencyMs.P99, r.FramesLost, r.FramesSentAfterKeyframe, r.RSSMBPerStream,
				r.LoadAvgBefore, r.LoadAvgAfter)
		}
	}
	if len(sat) > 0 {
		servers := make([]string, 0, len(sat))
		for s := range sat {
			servers = append(servers, s)
		}
		sort.Strings(servers)
		fmt.Fprintf(&b, "\n### Saturation search (saturated: a stream not live, a frame lost, or p99 > %d ms)\n\n", saturationP99Ms)
		b.WriteString("| server | streams tried (CPU % per stream, p99 ms, verdict) | most streams carried | saturated at |\n")
		b.WriteString("| --- | --- | ---: | ---: |\n")
		for _, s := range servers {
			rs := sat[s]
			var tried []string
			carried, at := 0, "-"
			for _, r := range rs {
				why := saturated(r)
				verdict := "ok"
				if why != "" {
					verdict = why
					if at == "-" {
						at = strconv.Itoa(r.Streams)
					}
				} else if at == "-" {
					carried = r.Streams
				}
				tried = append(tried, fmt.Sprintf("%d (%.3f, %.1f, %s; load %.2f → %.2f)", r.Streams, r.CPUPercentPerStream, r.LatencyMs.P99, verdict, r.LoadAvgBefore, r.LoadAvgAfter))
			}
			carriedCell := strconv.Itoa(carried)
			if at == "-" {
				carriedCell = "≥ " + carriedCell
			}
			fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", s, strings.Join(tried, "; "), carriedCell, at)
		}
	}
	if floorNs > 0 {
		fmt.Fprintf(&b, "\nfloor: UDP receive + SRTP decrypt, %.0f ns per packet (cmd/loadgen/srtpfloor); ns per RTP packet = the server's CPU time per packet the publishers sent.\n", floorNs)
	}
	_, err = io.WriteString(w, b.String())
	return runs, err
}

// plotCompareSVG draws, for every server and job of the paired runs, the
// mean CPU % per stream (left panel) and latency p99 (right panel) against
// the stream count.
func plotCompareSVG(runs []sideRun) (string, error) {
	type sk struct{ server, job string }
	type acc struct {
		cpu, p99 float64
		n        int
	}
	data := map[sk]map[int]*acc{}
	var keys []sk
	var counts []int
	seen := map[int]bool{}
	for _, r := range runs {
		if r.key.kind != "pair" {
			continue
		}
		k := sk{r.key.server, r.key.job}
		if data[k] == nil {
			data[k] = map[int]*acc{}
			keys = append(keys, k)
		}
		a := data[k][r.key.streams]
		if a == nil {
			a = &acc{}
			data[k][r.key.streams] = a
		}
		a.cpu += r.res.CPUPercentPerStream
		a.p99 += r.res.LatencyMs.P99
		a.n++
		if !seen[r.key.streams] {
			seen[r.key.streams] = true
			counts = append(counts, r.key.streams)
		}
	}
	if len(keys) == 0 {
		return "", errors.New("no paired runs to plot")
	}
	sort.Ints(counts)
	sort.Slice(keys, func(i, j int) bool {
		if keys[i].job != keys[j].job {
			return keys[i].job < keys[j].job
		}
		return keys[i].server < keys[j].server
	})
	const (
		W, H         = 960.0, 440.0
		pw, ph       = 360.0, 280.0
		top          = 50.0
		left1, left2 = 70.0, 560.0
	)
	maxCPU, maxP99 := 0.0, 0.0
	for _, k := range keys {
		for _, a := range data[k] {
			maxCPU = max(maxCPU, a.cpu/float64(a.n))
			maxP99 = max(maxP99, a.p99/float64(a.n))
		}
	}
	xOf := func(left float64, n int) float64 {
		i := sort.SearchInts(counts, n)
		if len(counts) == 1 {
			return left + pw/2
		}
		return left + float64(i)/float64(len(counts)-1)*pw
	}
	colors := []string{"#1f5fbf", "#e67e22", "#27ae60", "#8e44ad", "#c0392b", "#7f8c8d"}
	dashes := []string{"", ` stroke-dasharray="6 4"`, ` stroke-dasharray="2 3"`}
	serverColor := map[string]string{}
	// the jobs bench.sh runs keep their line style whichever are present
	jobDash := map[string]string{"video": dashes[0], "opus": dashes[1], "aac": dashes[2]}
	for _, k := range keys {
		if _, ok := serverColor[k.server]; !ok {
			serverColor[k.server] = colors[len(serverColor)%len(colors)]
		}
		if _, ok := jobDash[k.job]; !ok {
			jobDash[k.job] = dashes[len(jobDash)%len(dashes)]
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="%.0f" height="%.0f" fill="white"/>`+"\n", W, H)
	fmt.Fprintf(&b, `<text x="%.0f" y="24" text-anchor="middle" font-size="15" font-weight="bold">side by side: CPU per stream and latency p99 against streams (mean of the interleaved runs)</text>`+"\n", W/2)
	panel := func(left float64, title string, vmax float64, v func(*acc) float64, unit string) {
		axTop, step := niceAxis(vmax)
		y := func(x float64) float64 { return top + ph - x/axTop*ph }
		for t := 0.0; t <= axTop+step/1e6; t += step {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#e4e4e4"/>`+"\n", left, y(t), left+pw, y(t))
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", left-6, y(t)+4, fmtTick(t, step))
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#444"/>`+"\n", left, top, pw, ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle" font-weight="bold">%s</text>`+"\n", left+pw/2, top-8, title)
		for _, n := range counts {
			x := xOf(left, n)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%d</text>`+"\n", x, top+ph+18, n)
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">streams</text>`+"\n", left+pw/2, top+ph+36)
		for _, k := range keys {
			var pts []string
			for _, n := range counts {
				a := data[k][n]
				if a == nil {
					continue
				}
				x, yy := xOf(left, n), y(v(a))
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x, yy))
				fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>`+"\n", x, yy, serverColor[k.server])
				fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" font-size="10" fill="%s">%s</text>`+"\n", x+5, yy-5, serverColor[k.server], fmtTick(v(a), step/10)+unit)
			}
			fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), serverColor[k.server], jobDash[k.job])
		}
	}
	panel(left1, "CPU % of one core per stream", maxCPU, func(a *acc) float64 { return a.cpu / float64(a.n) }, "")
	panel(left2, "latency p99, publisher to RTMP sink (ms)", maxP99, func(a *acc) float64 { return a.p99 / float64(a.n) }, "")
	ly := top + ph + 60
	for i, k := range keys {
		lx := left1 + float64(i%4)*220
		yy := ly + float64(i/4)*18
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/><text x="%.1f" y="%.1f">%s, %s</text>`+"\n",
			lx, yy, lx+24, yy, serverColor[k.server], jobDash[k.job], lx+30, yy+4, k.server, k.job)
	}
	b.WriteString("</svg>\n")
	return b.String(), nil
}
