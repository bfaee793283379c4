package config

import (
	"os"
	"testing"
)

// FuzzParse checks that Parse never panics and only accepts what Validate
// accepts.
func FuzzParse(f *testing.F) {
	if data, err := os.ReadFile(examplePath); err == nil {
		f.Add(data)
	}
	for _, s := range []string{
		"version = 1\n",
		"version = 1\nbogus = 1\n",
		"version = 1\n[node]\nrole = \"worker\"\n[join]\naddrs = [\"10.0.0.1:4242\"]\ntoken = \"t\"\n",
		"version = 1\n[raft]\nheartbeat_timeout = \"5x\"\n",
		"version = 1\n[plugins.scheduler]\npath = \"/x\"\n[plugins.scheduler.config]\na.b = [1, 2.5, \"c\", 1979-05-27T07:32:00Z]\n",
		"version = 1\n[plugins.executor.config]\nt = [[1], [{a = 1}]]\n",
		"version = 1\n[[node]]\n",
		"version = 1\n[Node]\nRole = 1\n",
		"[node\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse(data)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Errorf("Parse(%q) succeeded, but Validate() = %v", data, err)
		}
	})
}
