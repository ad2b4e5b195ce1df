package localstack

import (
	"bytes"
	"fmt"
	"time"
)

// TimelineSVG draws one tier's recorded timeline: the backlog (jobs waiting
// or running) as a line and the workers as steps, over seconds since the
// first sample. The docs' scaling plot is made by it from a recorded run.
func TimelineSVG(samples []Sample, title string) []byte {
	const w, h, left, right, top, bottom = 720, 300, 50, 110, 30, 40
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", w, h)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", w, h)
	fmt.Fprintf(&b, `<text x="%d" y="18" font-size="14">%s</text>`+"\n", left, escape(title))
	if len(samples) == 0 {
		b.WriteString("</svg>\n")
		return b.Bytes()
	}
	start := samples[0].At
	span := max(samples[len(samples)-1].At.Sub(start), time.Second).Seconds()
	peak := 1
	for _, s := range samples {
		peak = max(peak, s.Backlog, s.Workers)
	}
	x := func(t time.Time) float64 { return left + t.Sub(start).Seconds()/span*float64(w-left-right) }
	y := func(v int) float64 { return float64(h-bottom) - float64(v)/float64(peak)*float64(h-top-bottom) }
	// Axes with a few ticks.
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, h-bottom, w-right, h-bottom)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="black"/>`+"\n", left, top, left, h-bottom)
	for i := 0; i <= 4; i++ {
		v := peak * i / 4
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%d</text>`+"\n", left-6, y(v)+4, v)
		sec := span * float64(i) / 4
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%.0fs</text>`+"\n", left+sec/span*float64(w-left-right), h-bottom+16, sec)
	}
	var backlog, workers bytes.Buffer
	for i, s := range samples {
		fmt.Fprintf(&backlog, "%.1f,%.1f ", x(s.At), y(s.Backlog))
		if i > 0 { // steps: hold the previous count until this sample
			fmt.Fprintf(&workers, "%.1f,%.1f ", x(s.At), y(samples[i-1].Workers))
		}
		fmt.Fprintf(&workers, "%.1f,%.1f ", x(s.At), y(s.Workers))
	}
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#d62728" stroke-width="2" points="%s"/>`+"\n", backlog.String())
	fmt.Fprintf(&b, `<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="%s"/>`+"\n", workers.String())
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#d62728">backlog</text>`+"\n", w-right+10, top+10)
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#1f77b4">workers</text>`+"\n", w-right+10, top+28)
	b.WriteString("</svg>\n")
	return b.Bytes()
}

func escape(s string) string {
	var b bytes.Buffer
	for _, r := range s {
		switch r {
		case '<':
			b.WriteString("&lt;")
		case '>':
			b.WriteString("&gt;")
		case '&':
			b.WriteString("&amp;")
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}
