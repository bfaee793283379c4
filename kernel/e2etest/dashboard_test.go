package e2etest

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromium is Debian's chromium package, which scripts/deps.sh installs.
const chromium = "/usr/bin/chromium"

// liveBound is how long a change may take to reach the open page and still
// count as live for this test. The page never polls, so any change that
// appears without a reload came through the event stream; the bound only
// keeps a broken stream from passing by luck, and is generous for a loaded
// machine. The measured latency is logged (and is well under a second
// when the machine is quiet).
const liveBound = 10 * time.Second

// TestDashboard opens a real node's dashboard in headless Chromium, sees
// its node, a service and its tasks, then sees a `service scale` and a
// killed task's failure appear without reloading. With
// SHOAL_DASHBOARD_SCREENSHOTS=DIR (relative to the repository root, e.g.
// docs) it saves screenshots of the pages there.
func TestDashboard(t *testing.T) {
	if _, err := os.Stat(chromium); err != nil {
		t.Skipf("the browser test needs Debian's chromium at %s (run scripts/deps.sh): %v", chromium, err)
	}
	n := startNode(t)
	n.mustRun("service", "create", "--name", "web", "--replicas", "2", "--restart-delay", "200ms", testImage, "out:hello from web", "sleep:inf")
	svcID := n.serviceID("web")
	n.waitRunning(svcID, 2, 60*time.Second)

	ctx := browser(t)
	url := "http://" + n.metrics + "/"
	count := func(sel string) string { return fmt.Sprintf("document.querySelectorAll(%q).length", sel) }
	running := `tr.task[data-service="web"][data-desired="running"][data-state="running"]`
	if err := chromedp.Do(ctx,
		chromedp.EmulateViewport(1200, 800),
		chromedp.Navigate(url),
		chromedp.WaitVisible(chromedp.CSS(`details[data-name="web"]`)),
		poll(count(`tr.node[data-state="ready"]`)+" === 1"),
		poll(count(running)+" === 2"),
		chromedp.Click(chromedp.CSS(`details[data-name="web"] summary`)),
	); err != nil {
		t.Fatalf("the dashboard at %s shows no ready node, service web and its 2 running tasks: %v", url, err)
	}

	// Scale: the new tasks appear without a reload. The page notes when
	// (on its clock, the machine's) and keeps a mark a reload would lose.
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](watchJS(count(`tr.task[data-service="web"][data-desired="running"]`)+" >= 4"))); err != nil {
		t.Fatal(err)
	}
	n.mustRun("service", "scale", "--detach", "web=4")
	scaled := time.Now()
	seen := waitSeen(t, ctx, "the scaled service's new tasks")
	t.Logf("dashboard: service scale 2 -> 4: new tasks on the page %v after the CLI returned", seen.Sub(scaled).Round(time.Millisecond))
	if d := seen.Sub(scaled); d > liveBound {
		t.Errorf("the new tasks appeared %v after the scale, want within %v", d, liveBound)
	}
	if err := chromedp.Do(ctx, poll(count(running)+" === 4")); err != nil {
		t.Fatalf("the page does not show 4 running tasks: %v", err)
	}

	// Kill a task's process: its row turns failed, without a reload.
	victim := n.waitRunning(svcID, 4, 60*time.Second)[0]
	sel := fmt.Sprintf(`tr.task[data-id=%q]`, victim.GetId())
	if err := chromedp.Do(ctx, chromedp.Evaluate[chromedp.Void](watchJS(fmt.Sprintf(`document.querySelector(%q)?.dataset.state !== "running"`, sel)))); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(int(victim.GetStatus().GetPid()), syscall.SIGKILL); err != nil {
		t.Fatalf("kill task %s's process %d: %v", victim.GetId(), victim.GetStatus().GetPid(), err)
	}
	killed := time.Now()
	seen = waitSeen(t, ctx, "the killed task's state")
	t.Logf("dashboard: task process killed: its state on the page %v after the kill", seen.Sub(killed).Round(time.Millisecond))
	if d := seen.Sub(killed); d > liveBound {
		t.Errorf("the killed task's state changed %v after the kill, want within %v", d, liveBound)
	}
	if err := chromedp.Do(ctx, poll(fmt.Sprintf(`document.querySelector(%q)?.dataset.state === "failed"`, sel))); err != nil {
		t.Fatalf("the killed task %s does not show as failed: %v", victim.GetId(), err)
	}
	exit, err := chromedp.Run(ctx, chromedp.Evaluate[string](fmt.Sprintf(`document.querySelector(%q).children[7].textContent`, sel)))
	if err != nil {
		t.Fatal(err)
	}
	if exit != "137" {
		t.Errorf("the killed task's exit code on the page = %q, want 137 (SIGKILL)", exit)
	}
	// Its replacement starts (restart delay 200ms), still without a reload.
	if err := chromedp.Do(ctx, poll(count(running)+" === 4")); err != nil {
		t.Fatalf("the page does not show the replacement running: %v", err)
	}
	screenshot(t, ctx, "dashboard-task-failed.png")

	// The logs panel follows the service's logs.
	if err := chromedp.Do(ctx,
		chromedp.Click(chromedp.CSS(`details[data-name="web"] button[data-logs]`)),
		poll(`document.getElementById("logs").textContent.includes("hello from web")`),
	); err != nil {
		t.Fatalf("the logs panel does not show the service's output: %v", err)
	}
	screenshot(t, ctx, "dashboard-logs.png")

	// The page was never reloaded.
	if mark, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`window.shoalTestMark === true`)); err != nil || !mark {
		t.Errorf("the page was reloaded (its mark is gone): %v", err)
	}
	// And the dashboard answers only loopback names without a token.
	req, _ := http.NewRequest("GET", url+"api/state", nil)
	req.Host = "shoal.example"
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("GET /api/state for host shoal.example = %v %v, want 403", resp.Status, err)
	}
}

// browser starts headless Chromium for the test.
func browser(t *testing.T) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chromium), chromedp.NoSandbox, chromedp.WindowSize(1200, 800))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx, chromedp.WithLogf(t.Logf))
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	return ctx
}

// poll waits until expr is true on the page.
func poll(expr string) chromedp.Action[chromedp.Void] {
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Poll[bool](expr, chromedp.WithPollingTimeout(60*time.Second))(ctx, t)
		return err
	})
}

// watchJS sets window.shoalSeen to the time (ms since the epoch) the page
// first changes so that cond holds, checked on every change of the page.
func watchJS(cond string) string {
	return fmt.Sprintf(`(() => {
  window.shoalTestMark = true;
  window.shoalSeen = 0;
  const check = () => { if (!window.shoalSeen && (%s)) window.shoalSeen = Date.now(); };
  new MutationObserver(check).observe(document.body, {childList: true, subtree: true, attributes: true});
})()`, cond)
}

// waitSeen waits for watchJS's time and returns it.
func waitSeen(t *testing.T, ctx context.Context, what string) time.Time {
	t.Helper()
	ms, err := chromedp.Run(ctx, chromedp.Poll[float64](`window.shoalSeen || false`, chromedp.WithPollingTimeout(60*time.Second)))
	if err != nil {
		t.Fatalf("%s never appeared on the page: %v", what, err)
	}
	return time.UnixMilli(int64(ms))
}

// screenshot saves the whole page as name under
// $SHOAL_DASHBOARD_SCREENSHOTS, relative to the repository root.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SHOAL_DASHBOARD_SCREENSHOTS")
	if dir == "" {
		return
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join("..", "..", dir)
	}
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("dashboard: screenshot %s (%d bytes)", filepath.Join(dir, name), len(png))
}
