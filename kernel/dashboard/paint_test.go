package dashboard

import (
	"context"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestPageWeight1000 records what a browser loads for a cluster of 1,000
// tasks: the embedded files and the state. Logged, not asserted.
func TestPageWeight1000(t *testing.T) {
	f := newFixture(t, 1000)
	h, _ := newHandler(t, f, "")
	var assets int
	fs.WalkDir(Assets(), ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			b, _ := fs.ReadFile(Assets(), p)
			t.Logf("page weight: %s %d bytes", p, len(b))
			assets += len(b)
		}
		return nil
	})
	w := do(h, "GET", "/api/state", local, "", nil)
	t.Logf("page weight: assets %d bytes, /api/state with 1,000 tasks %d bytes, total %d bytes", assets, w.Body.Len(), assets+w.Body.Len())
}

// TestFirstPaint1000 measures, in headless Chromium, the time from
// navigation to the first paint and to the frame in which the state of
// 1,000 tasks is on screen. It runs with SHOAL_DASHBOARD_PAINT=N (N
// loads; make bench) and needs Debian's chromium.
func TestFirstPaint1000(t *testing.T) {
	runs := 0
	if s := os.Getenv("SHOAL_DASHBOARD_PAINT"); s != "" {
		for _, c := range s {
			runs = runs*10 + int(c-'0')
		}
	}
	if runs <= 0 {
		t.Skip("set SHOAL_DASHBOARD_PAINT=N to measure N page loads (make bench)")
	}
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("needs Debian's chromium (scripts/deps.sh): %v", err)
	}
	f := newFixture(t, 1000)
	h, _ := newHandler(t, f, "")
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/api/state")
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelAlloc()
	ctx, cancel := chromedp.NewContext(actx)
	defer cancel()
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	defer cancelTimeout()

	var fcp, data []float64
	for i := range runs + 1 {
		// A fresh page each time, so nothing is cached or warm in it.
		tab, cancelTab := chromedp.NewContext(ctx)
		err := chromedp.Do(tab, chromedp.EmulateViewport(1200, 800), chromedp.Navigate(srv.URL+"/"))
		if err == nil {
			_, err = chromedp.Run(tab, chromedp.Poll[bool](`performance.getEntriesByName("shoal-rendered").length > 0 && document.querySelectorAll("tr.task").length === 1000`,
				chromedp.WithPollingTimeout(time.Minute)))
		}
		var times []float64
		if err == nil {
			times, err = chromedp.Run(tab, chromedp.Evaluate[[]float64](`[performance.getEntriesByName("first-contentful-paint")[0]?.startTime ?? -1, performance.getEntriesByName("shoal-rendered")[0].startTime]`))
		}
		cancelTab()
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			continue // the browser's own start-up
		}
		fcp, data = append(fcp, times[0]), append(data, times[1])
	}
	slices.Sort(fcp)
	slices.Sort(data)
	t.Logf("first paint with 1,000 tasks (/api/state %d bytes), %d loads: first contentful paint median %.0f ms (min %.0f, max %.0f); state on screen median %.0f ms (min %.0f, max %.0f)",
		n, runs, fcp[len(fcp)/2], fcp[0], fcp[len(fcp)-1], data[len(data)/2], data[0], data[len(data)-1])
}
