package sdk

import (
	"bufio"
	"bytes"
	"encoding/json"
	"log/slog"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// TestLogHandlerSpeaksHclog checks that each line LogHandler writes is one
// go-plugin re-levels: its level one hclog knows, its time in the format
// go-plugin parses, the message and attributes kept.
func TestLogHandlerSpeaksHclog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(LogHandler(&buf)).With("task_id", "t1")
	log.Debug("d")
	log.Info("i", "n", 3)
	log.Log(t.Context(), slog.LevelInfo+2, "between")
	log.Warn("w")
	log.Error("e", slog.Group("g", "level", "not ours"))
	log.Log(t.Context(), slog.LevelDebug+2, "verbose")

	want := []struct {
		msg   string
		level hclog.Level
	}{
		{"d", hclog.Debug}, {"i", hclog.Info}, {"between", hclog.Info},
		{"w", hclog.Warn}, {"e", hclog.Error}, {"verbose", hclog.Debug},
	}
	sc := bufio.NewScanner(&buf)
	i := 0
	for ; sc.Scan(); i++ {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("line %d %q: %v", i, sc.Text(), err)
		}
		if i >= len(want) {
			t.Fatalf("extra line %s", sc.Text())
		}
		lv, _ := line["@level"].(string)
		if got := hclog.LevelFromString(lv); got != want[i].level {
			t.Errorf("%s: @level %q is hclog %v, want %v", want[i].msg, lv, got, want[i].level)
		}
		if line["@message"] != want[i].msg || line["task_id"] != "t1" {
			t.Errorf("line %s: want @message %q and task_id t1", sc.Text(), want[i].msg)
		}
		ts, _ := line["@timestamp"].(string)
		if _, err := time.Parse(hclogTime, ts); err != nil {
			t.Errorf("@timestamp %q: %v", ts, err)
		}
		for _, k := range []string{"level", "msg", "time"} {
			if _, ok := line[k]; ok {
				t.Errorf("line %s keeps slog's key %q", sc.Text(), k)
			}
		}
	}
	if sc.Err() != nil || i != len(want) {
		t.Fatalf("%d lines, want %d (%v)", i, len(want), sc.Err())
	}
}
