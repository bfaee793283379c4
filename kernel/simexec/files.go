package simexec

import (
	"fmt"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// A simulated task's secrets and configs (Prepare's files) are kept in
// memory with it, for tests to look at (Files), and dropped by Remove.

// checkFiles checks that files has one file for each reference of the
// task's spec (the file whose ref equals it, secret for secret) and none
// for anything else; errors name the fields as a real executor's do.
func checkFiles(t *objectv1.Task, files []*objectv1.TaskFile) error {
	c := t.GetSpec().GetContainer()
	var fe sdk.FieldErrors
	used := make([]bool, len(files))
	match := func(field string, secret bool, ref *objectv1.FileReference) {
		for i, f := range files {
			if !used[i] && f.GetSecret() == secret && proto.Equal(f.GetRef(), ref) {
				used[i] = true
				return
			}
		}
		fe.Add(field, "the data of %q (%s) did not come with the task", ref.GetName(), ref.GetId())
	}
	for i, ref := range c.GetSecrets() {
		match(fmt.Sprintf("task.spec.container.secrets[%d]", i), true, ref)
	}
	for i, ref := range c.GetConfigs() {
		match(fmt.Sprintf("task.spec.container.configs[%d]", i), false, ref)
	}
	for i, f := range files {
		if !used[i] {
			fe.Add(fmt.Sprintf("files[%d]", i), "is for no reference of the task's spec (%q)", f.GetRef().GetName())
		}
	}
	return fe.Err()
}

// Files returns copies of the files the task was prepared with, in
// Prepare's order; nil for a task without any or one the executor does not
// hold.
func (e *Executor) Files(taskID string) []*objectv1.TaskFile {
	e.mu.Lock()
	defer e.mu.Unlock()
	t, ok := e.tasks[taskID]
	if !ok {
		return nil
	}
	return cloneFiles(t.files)
}

func cloneFiles(files []*objectv1.TaskFile) []*objectv1.TaskFile {
	if len(files) == 0 {
		return nil
	}
	out := make([]*objectv1.TaskFile, len(files))
	for i, f := range files {
		out[i] = proto.CloneOf(f)
	}
	return out
}
