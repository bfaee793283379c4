package e2etest

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestStackBadInput deploys compose files with bad input through the real
// CLI against a real node: an unknown key, a wrong type, a secret the file
// does not declare, an external secret that does not exist, a bind mount
// outside the cluster's bind mount roots and a 600 KiB secret. Each fails
// with an error naming the file, the service and the key, and leaves no
// service, network, secret or config behind. Each file but its fault is a
// stack that deploys (the last case shows it).
func TestStackBadInput(t *testing.T) {
	n := startNode(t)
	n.mustRun("cluster", "update", "--bind-mount-root", "/srv")
	dir := t.TempDir()
	write := func(name, text string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("big.txt", strings.Repeat("x", 600<<10))
	write("pw.txt", "pw")
	const head = "services:\n  web:\n    image: " + testImage + "\n"
	for _, c := range []struct {
		file, text string
		want       []string
	}{
		{"unknown.yml", head + "    imagee: x\n", []string{"unknown.yml", `service "web"`, "imagee"}},
		{"wrongtype.yml", head + "    deploy:\n      replicas: many\n", []string{"wrongtype.yml", "services.web.deploy.replicas"}},
		{"undeclared.yml", head + "    secrets: [missing]\n", []string{"undeclared.yml", `service "web"`, "secret missing"}},
		{"external.yml", head + "    secrets: [outside]\nsecrets:\n  outside:\n    external: true\n",
			[]string{"external.yml", `service "web"`, "secrets[0]", "outside does not exist"}},
		{"bind.yml", head + "    volumes:\n      - /etc:/host-etc:ro\n",
			[]string{"bind.yml", `service "web"`, "volumes[0]", "/etc is outside", "/srv"}},
		{"big.yml", head + "    secrets: [big]\nsecrets:\n  big:\n    file: ./big.txt\n",
			[]string{"big.yml", `service "web"`, "secrets[0]", "big.txt", "500 KiB"}},
	} {
		r := n.cli("stack", "deploy", "-c", write(c.file, c.text), "bad")
		if r.code == 0 {
			t.Errorf("%s: deployed, want an error", c.file)
			continue
		}
		for _, w := range c.want {
			if !strings.Contains(r.stderr, w) {
				t.Errorf("%s: stderr %q does not name %q", c.file, r.stderr, w)
			}
		}
	}
	for _, what := range [][]string{{"service", "ls", "-q"}, {"network", "ls", "-q"}, {"secret", "ls", "-q"}, {"config", "ls", "-q"}} {
		if out := n.ok(t, what...); strings.TrimSpace(out) != "" {
			t.Errorf("shoal %s after bad deploys: %q, want nothing stored", strings.Join(what, " "), out)
		}
	}
	// The same file without its fault deploys: the faults were the files'.
	r := n.cli("stack", "deploy", "-c", write("good.yml", head+"    secrets: [pw]\nsecrets:\n  pw:\n    file: ./pw.txt\n"), "good")
	if r.code != 0 || !strings.Contains(r.stdout, "Creating service good_web") {
		t.Fatalf("good.yml: %+v", r)
	}
	n.mustRun("stack", "rm", "good")
}
