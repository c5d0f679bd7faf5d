package load

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
)

// WriteText writes the report for a reader at a terminal.
func (r *Report) WriteText(w io.Writer) error {
	fmt.Fprintf(w, "souk load: %s, %.0fs at %g operations/s (open loop), %d shoppers from %d source address(es)\n",
		r.Gateway, r.Seconds, r.Rate, r.Clients, r.Addresses)
	fmt.Fprintf(w, "mix: %s\n\n", r.Mix)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "operation\tcount\trate/s\terrors\tp50 ms\tp90 ms\tp99 ms\tp99.9 ms\tmax ms\t\terrors by status or kind; least rate limit left")
	for _, o := range r.Operations {
		l := o.Latency
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%d\t%s\t%s\t%s\t%s\t%s\t\t%s\n", o.Name, o.Count, o.Rate, o.Errors,
			ms(l.P50), ms(l.P90), ms(l.P99), ms(l.P999), ms(l.Max), errorsBy(o))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nrequests: %d, errors: %d: %.3f%% succeeded at the first attempt\n", r.Requests, r.Errors, 100*r.SuccessRate)
	fmt.Fprintf(w, "seconds below 99%%: %d (longest run %ds); below 90%%: %d (longest run %ds)\n",
		r.SecondsBelow99, r.LongestBelow99, r.SecondsBelow90, r.LongestBelow90)
	o := r.Orders
	fmt.Fprintf(w, "orders: %d placed: %d confirmed, %d cancelled%s, %d still open\n",
		o.Placed, o.Confirmed, o.Terminal()-o.Confirmed, reasons(o.Cancelled), o.Open)
	if o.Failed > 0 {
		fmt.Fprintf(w, "placements that failed: %d; sent again with their Idempotency-Key: %d had got through, %d had not (placed now), %d failed again\n",
			o.Failed, o.GotThrough, o.NotThrough, o.Unknown)
	}
	return nil
}

func ms(v float64) string {
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func errorsBy(o OpStats) string {
	keys := slices.Sorted(maps.Keys(o.ErrorsBy))
	slices.SortStableFunc(keys, func(a, b string) int { return int(o.ErrorsBy[b] - o.ErrorsBy[a]) })
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s ×%d", k, o.ErrorsBy[k]))
	}
	if o.Headroom != "" {
		parts = append(parts, "left "+o.Headroom)
	}
	return strings.Join(parts, ", ")
}

func reasons(c map[string]int64) string {
	if len(c) == 0 {
		return ""
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(c)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, c[k]))
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteHTML writes a page that needs nothing but a browser: the text
// report and the timeline as inline SVG.
func (r *Report) WriteHTML(w io.Writer) error {
	var text strings.Builder
	if err := r.WriteText(&text); err != nil {
		return err
	}
	return r.WritePage(w, "souk load", text.String())
}

// WritePage writes a page with a title, the timeline as inline SVG, and
// text below it.
func (r *Report) WritePage(w io.Writer, title, text string) error {
	fmt.Fprintf(w, `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>%s: %s</title>
<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}pre{font-size:13px;background:#f6f6f6;padding:1em;overflow:auto}</style>
</head><body>
<h1>%s</h1>
`, html.EscapeString(title), html.EscapeString(r.Gateway), html.EscapeString(title))
	if err := r.WriteSVG(w); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "\n<pre>%s</pre>\n</body></html>\n", html.EscapeString(text))
	return err
}

// chart geometry: two panels over the same time axis.
const (
	svgW, svgH     = 960, 580
	padL, padR     = 60, 50
	latTop, latBot = 40, 250 // the latency panel's top and bottom
	errTop, errBot = 300, 470
)

// WriteSVG draws the timeline: latency per second (p50, p99, max, on a
// log scale) above, errors and success rate per second below, and the
// marks (faults) as vertical lines across both.
func (r *Report) WriteSVG(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="11">`+"\n", svgW, svgH, svgW, svgH)
	b.WriteString(`<rect width="100%" height="100%" fill="#fff"/>` + "\n")
	n := max(len(r.Timeline), 1)
	x := func(t float64) float64 { return padL + t/float64(n)*float64(svgW-padL-padR) }

	// Latency: log scale from 0.1 ms to the largest max, rounded up to a
	// power of ten.
	top := 1.0
	for _, s := range r.Timeline {
		top = math.Max(top, s.Max)
	}
	top = math.Pow(10, math.Ceil(math.Log10(top)))
	lo := 0.1
	y := func(v float64) float64 {
		v = math.Max(v, lo)
		return latBot - (math.Log10(v)-math.Log10(lo))/(math.Log10(top)-math.Log10(lo))*(latBot-latTop)
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13">Latency per second, ms (log scale), from each request's scheduled start</text>`+"\n", padL, latTop-15)
	for v := lo; v <= top*1.001; v *= 10 {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%g</text>`+"\n",
			padL, svgW-padR, y(v), y(v), padL-5, y(v)+4, v)
	}
	series := []struct {
		name, color string
		v           func(Second) float64
	}{
		{"max", "#bbb", func(s Second) float64 { return s.Max }},
		{"p99", "#d62728", func(s Second) float64 { return s.P99 }},
		{"p50", "#1f77b4", func(s Second) float64 { return s.P50 }},
	}
	for i, se := range series {
		var pts []string
		for _, s := range r.Timeline {
			if s.Requests > 0 {
				pts = append(pts, fmt.Sprintf("%.1f,%.1f", x(float64(s.T)+0.5), y(se.v(s))))
			}
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", se.color, strings.Join(pts, " "))
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`+"\n", svgW-padR-120+40*i, latTop-15, se.color, se.name)
	}

	// Errors per second as bars, success rate as a line (right scale).
	most := int64(1)
	for _, s := range r.Timeline {
		most = max(most, s.Requests)
	}
	ye := func(v float64) float64 { return errBot - v/float64(most)*(errBot-errTop) }
	ys := func(rate float64) float64 { return errBot - rate*(errBot-errTop) }
	fmt.Fprintf(&b, `<text x="%d" y="%d" font-size="13">Requests (grey) and errors (red) per second; success rate (green, right scale 0–100%%)</text>`+"\n", padL, errTop-15)
	for _, f := range []float64{0, 0.5, 1} {
		fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%d" y="%.1f" text-anchor="end">%.0f</text><text x="%d" y="%.1f">%.0f%%</text>`+"\n",
			padL, svgW-padR, ys(f), ys(f), padL-5, ys(f)+4, f*float64(most), svgW-padR+2, ys(f)+4, 100*f)
	}
	bw := math.Max(x(1)-x(0)-1, 0.5)
	var rate []string
	for _, s := range r.Timeline {
		if s.Requests == 0 {
			continue
		}
		fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#e4e4e4"/>`, x(float64(s.T)), ye(float64(s.Requests)), bw, errBot-ye(float64(s.Requests)))
		if s.Errors > 0 {
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#d62728"><title>%ds: %d errors of %d</title></rect>`,
				x(float64(s.T)), ye(float64(s.Errors)), bw, errBot-ye(float64(s.Errors)), s.T, s.Errors, s.Requests)
		}
		rate = append(rate, fmt.Sprintf("%.1f,%.1f", x(float64(s.T)+0.5), ys(s.SuccessRate())))
	}
	fmt.Fprintf(&b, "\n"+`<polyline fill="none" stroke="#2ca02c" stroke-width="1.5" points="%s"/>`+"\n", strings.Join(rate, " "))

	// The time axis and the marks.
	step := max(1, int(math.Ceil(float64(n)/12/10))*10)
	if n <= 30 {
		step = 5
	}
	for t := 0; t <= n; t += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%ds</text>`+"\n", x(float64(t)), errBot+15, t)
	}
	// Marks in the same second stack their labels below one another.
	stacked := map[int]int{}
	for _, m := range r.Marks {
		row := stacked[int(m.At)]
		stacked[int(m.At)]++
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%d" y2="%d" stroke="#ff7f0e" stroke-dasharray="3,3"><title>%s</title></line>`,
			x(m.At), x(m.At), latTop, errBot, html.EscapeString(m.Label))
		ly := errBot + 30 + (row%4)*11
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" fill="#ff7f0e" font-size="9" transform="rotate(-30 %.1f %d)">%s</text>`+"\n",
			x(m.At), ly, x(m.At), ly, html.EscapeString(shorten(m.Label, 28)))
	}
	b.WriteString("</svg>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func shorten(s string, n int) string {
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
