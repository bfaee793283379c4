package state

import (
	"fmt"
	"testing"

	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
	raftv1 "github.com/shoalhq/shoal/sdk/proto/shoal/raft/v1"
)

const (
	benchNodes    = 1000
	benchServices = 10
	benchTasks    = 10000
)

// benchStore holds 10,000 tasks of 10 services over 1,000 nodes (one in a
// hundred a manager), all applied at index 1.
func benchStore(b *testing.B) *Store {
	b.Helper()
	t := &raftv1.Transaction{}
	for i := range benchNodes {
		role := worker
		if i%100 == 0 {
			role = manager
		}
		t.Actions = append(t.Actions, act(opCreate, testNode(fmt.Sprintf("node-%04d", i), role, active)))
	}
	for i := range benchServices {
		t.Actions = append(t.Actions, act(opCreate, testService(fmt.Sprintf("svc-%02d", i), fmt.Sprintf("name-%02d", i))))
	}
	for i := range benchTasks {
		tk := testTask(fmt.Sprintf("task-%05d", i), fmt.Sprintf("svc-%02d", i%benchServices), fmt.Sprintf("node-%04d", i%benchNodes), running, running)
		t.Actions = append(t.Actions, act(opCreate, tk))
	}
	s := New()
	mustApply(b, s, 1, t)
	return s
}

// write prepares fn and applies it at the next index, as the leader does.
func write(b *testing.B, s *Store, index uint64, fn func(tx *Tx) error) {
	txn, err := s.Prepare(now, fn)
	if err != nil {
		b.Fatal(err)
	}
	if errs := s.Apply(index, command(txn)); errs[0] != nil {
		b.Fatal(errs[0])
	}
}

func BenchmarkCreateTask(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	i := uint64(1)
	for b.Loop() {
		i++
		write(b, s, i, func(tx *Tx) error {
			return tx.CreateTask(testTask(fmt.Sprint("new-", i), "svc-00", "", running, pending))
		})
	}
}

func BenchmarkUpdateTask(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	i := uint64(1)
	for b.Loop() {
		i++
		id := fmt.Sprintf("task-%05d", i%benchTasks)
		write(b, s, i, func(tx *Tx) error {
			tk := clone(tx.Task(id))
			tk.NodeId = fmt.Sprintf("node-%04d", i%benchNodes)
			return tx.UpdateTask(tk)
		})
	}
}

func BenchmarkCreateNode(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	i := uint64(1)
	for b.Loop() {
		i++
		write(b, s, i, func(tx *Tx) error {
			return tx.CreateNode(testNode(fmt.Sprint("new-", i), worker, active))
		})
	}
}

func BenchmarkGetTask(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("task-%05d", i%benchTasks)
		s.View(func(tx *ReadTx) {
			if tx.Task(id) == nil {
				b.Fatal("missing task")
			}
		})
	}
}

func BenchmarkTasksByNode(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("node-%04d", i%benchNodes)
		s.View(func(tx *ReadTx) {
			if len(tx.TasksByNode(id)) != benchTasks/benchNodes {
				b.Fatal("wrong task count")
			}
		})
	}
}

func BenchmarkTasksByService(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		id := fmt.Sprintf("svc-%02d", i%benchServices)
		s.View(func(tx *ReadTx) {
			if len(tx.TasksByService(id)) != benchTasks/benchServices {
				b.Fatal("wrong task count")
			}
		})
	}
}

func BenchmarkNodesByRole(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		s.View(func(tx *ReadTx) {
			if len(tx.NodesByRole(objectv1.NodeRole_NODE_ROLE_MANAGER)) != benchNodes/100 {
				b.Fatal("wrong node count")
			}
		})
	}
}

// BenchmarkApply10kTasks is one command creating 10,000 tasks, as a
// scale-up writes them, applied to a store already holding 10,000.
func BenchmarkApply10kTasks(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		s := benchStore(b)
		t := &raftv1.Transaction{}
		for i := range benchTasks {
			t.Actions = append(t.Actions, act(opCreate, testTask(fmt.Sprintf("new-%05d", i), "svc-00", "", running, pending)))
		}
		cmd := command(t)
		b.StartTimer()
		if errs := s.Apply(2, cmd); errs[0] != nil {
			b.Fatal(errs[0])
		}
	}
}

// BenchmarkPrepare10kTasks is the leader's side of the same scale-up: one Tx
// creating 10,000 tasks.
func BenchmarkPrepare10kTasks(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		tasks := make([]*objectv1.Task, benchTasks)
		for i := range tasks {
			tasks[i] = testTask(fmt.Sprintf("new-%05d", i), "svc-00", "", running, pending)
		}
		b.StartTimer()
		_, err := s.Prepare(now, func(tx *Tx) error {
			for _, tk := range tasks {
				if err := tx.CreateTask(tk); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSnapshot(b *testing.B) {
	s := benchStore(b)
	b.ReportAllocs()
	for b.Loop() {
		if len(s.Snapshot().Tasks) != benchTasks {
			b.Fatal("wrong task count")
		}
	}
}
