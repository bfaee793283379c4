package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/shoalhq/shoal/sdk"
	workerv1 "github.com/shoalhq/shoal/sdk/proto/shoal/worker/v1"
)

const (
	// managersFile is where the agent keeps the last manager list it was
	// given, in Config.StateDir, so that a restarted agent can reach the
	// cluster even when the managers it was configured with are gone.
	managersFile = "managers.json"
	// defaultWeight is the weight of a configured manager address, the
	// same as a manager's default weight in the cluster, so that learned
	// and configured managers compete evenly until the cluster says
	// otherwise.
	defaultWeight = 10
)

// manager is one entry of the manager list.
type manager struct {
	Addr   string `json:"addr"`
	NodeID string `json:"node_id,omitempty"`
	Weight int32  `json:"weight"`
}

// managerList is the set of managers the agent may connect to, with their
// weights. It is safe for concurrent use.
type managerList struct {
	path string // "" keeps the list in memory only

	mu   sync.Mutex
	list []manager
}

// newManagerList starts from the list saved in stateDir, if any, plus the
// configured addresses it does not name: the saved list is what the cluster
// said last (weights included), and the configured addresses still help when
// every saved manager moved.
func newManagerList(configured []string, stateDir string) (*managerList, error) {
	m := &managerList{}
	if stateDir != "" {
		m.path = filepath.Join(stateDir, managersFile)
		saved, err := loadManagers(m.path)
		if err != nil {
			return nil, err
		}
		m.list = saved
	}
	for _, addr := range configured {
		if !slices.ContainsFunc(m.list, func(e manager) bool { return e.Addr == addr }) {
			m.list = append(m.list, manager{Addr: addr, Weight: defaultWeight})
		}
	}
	if !slices.ContainsFunc(m.list, func(e manager) bool { return e.Weight > 0 }) {
		return nil, fmt.Errorf("managers: none configured, and no usable list saved in the state directory: %w", sdk.ErrInvalidArgument)
	}
	return m, nil
}

// pick chooses a manager at random in proportion to its weight. A manager
// of weight 0 is never chosen. avoid (the manager that just failed) is
// chosen only when it is the only candidate.
func (m *managerList) pick(avoid string) (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return pickWeighted(m.list, avoid, rand.Int64N)
}

// pickWeighted is pick's pure core; randN returns a uniform integer in
// [0, n).
func pickWeighted(list []manager, avoid string, randN func(n int64) int64) (string, bool) {
	var total, others int64
	for _, e := range list {
		if e.Weight <= 0 {
			continue
		}
		total += int64(e.Weight)
		if e.Addr != avoid {
			others += int64(e.Weight)
		}
	}
	if total == 0 {
		return "", false
	}
	skip := avoid
	if others == 0 {
		skip, others = "", total
	}
	r := randN(others)
	for _, e := range list {
		if e.Weight <= 0 || (skip != "" && e.Addr == skip) {
			continue
		}
		if r < int64(e.Weight) {
			return e.Addr, true
		}
		r -= int64(e.Weight)
	}
	return "", false // unreachable: r < others
}

// update replaces the list with the one a manager sent, and saves it. It
// reports whether the list changed. A list without any manager of positive
// weight is refused: it would leave the agent nowhere to go, and the last
// usable list is a better bet than none.
func (m *managerList) update(in []*workerv1.WeightedManager) (changed bool, err error) {
	var next []manager
	for _, wm := range in {
		if wm.GetAddr() == "" || slices.ContainsFunc(next, func(e manager) bool { return e.Addr == wm.GetAddr() }) {
			continue
		}
		next = append(next, manager{Addr: wm.GetAddr(), NodeID: wm.GetNodeId(), Weight: max(wm.GetWeight(), 0)})
	}
	if !slices.ContainsFunc(next, func(e manager) bool { return e.Weight > 0 }) {
		return false, fmt.Errorf("manager list of %d entries has no manager of positive weight; keeping the previous list", len(in))
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Equal(m.list, next) {
		return false, nil
	}
	m.list = next
	if m.path == "" {
		return true, nil
	}
	if err := saveManagers(m.path, next); err != nil {
		return true, err
	}
	return true, nil
}

// addrs returns the addresses in the list.
func (m *managerList) addrs() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]string, len(m.list))
	for i, e := range m.list {
		out[i] = e.Addr
	}
	return out
}

func loadManagers(path string) ([]manager, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("load manager list: %w", err)
	}
	var list []manager
	if err := json.Unmarshal(b, &list); err != nil {
		return nil, fmt.Errorf("load manager list: %s: %w", path, err)
	}
	return slices.DeleteFunc(list, func(e manager) bool { return e.Addr == "" }), nil
}

// saveManagers writes the list atomically: a crash leaves the old list or
// the new one, never a torn file that would keep the agent from starting.
func saveManagers(path string, list []manager) error {
	b, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return fmt.Errorf("save manager list: %w", err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("save manager list: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+managersFile+".tmp-*")
	if err != nil {
		return fmt.Errorf("save manager list: %w", err)
	}
	defer os.Remove(f.Name()) // no-op after the rename
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save manager list: %w", err)
	}
	return nil
}

// backoff is exponential backoff with full jitter: the n-th consecutive
// failure waits a uniform random time in [0, min(max, base·2^n)]. Full
// jitter spreads the workers of a failed manager over the whole window, so
// that they do not all land on the next manager at once.
type backoff struct {
	base, max time.Duration
	failures  int
	randN     func(n int64) int64
}

// next returns how long to wait after one more failure.
func (b *backoff) next() time.Duration {
	ceiling := b.base
	for i := 0; i < b.failures && ceiling < b.max; i++ {
		ceiling *= 2
	}
	ceiling = min(ceiling, b.max)
	b.failures++
	return time.Duration(b.randN(int64(ceiling) + 1))
}

// reset starts over after a session that lived long enough to count as a
// success.
func (b *backoff) reset() { b.failures = 0 }
