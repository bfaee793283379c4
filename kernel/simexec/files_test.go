package simexec

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/sdk"
	objectv1 "github.com/shoalhq/shoal/sdk/proto/shoal/object/v1"
)

// TestFiles: Prepare keeps a task's files, Files returns copies of them,
// Remove drops them; a reference without its file and a file without a
// reference are sdk.ErrInvalidArgument naming the field.
func TestFiles(t *testing.T) {
	ctx := t.Context()
	sref := &objectv1.FileReference{Id: "s1", Name: "db_password"}
	cref := &objectv1.FileReference{Id: "c1", Name: "app.toml", Target: "/etc/app.toml"}
	task := newTask("t1")
	task.Spec.Container.Secrets = []*objectv1.FileReference{sref}
	task.Spec.Container.Configs = []*objectv1.FileReference{cref}
	files := []*objectv1.TaskFile{
		{Ref: sref, Secret: true, Data: []byte("pw")},
		{Ref: cref, Data: []byte("port = 1")},
	}

	e := New(Config{})
	for _, tc := range []struct {
		name  string
		files []*objectv1.TaskFile
		field string
	}{
		{"no files", nil, "task.spec.container.secrets[0]"},
		{"no secret", files[1:], "task.spec.container.secrets[0]"},
		{"the secret as a config", []*objectv1.TaskFile{{Ref: sref, Data: []byte("pw")}, files[1]}, "task.spec.container.secrets[0]"},
		{"an extra file", append(files[:2:2], &objectv1.TaskFile{Ref: &objectv1.FileReference{Name: "x"}}), "files[2]"},
	} {
		err := e.Prepare(ctx, task, tc.files, nil)
		var fe sdk.FieldErrors
		if !errors.Is(err, sdk.ErrInvalidArgument) || !errors.As(err, &fe) || fe[0].Field != tc.field {
			t.Errorf("Prepare with %s = %v, want an invalid argument naming %s", tc.name, err, tc.field)
		}
		if ti, err := e.Inspect(ctx, "t1"); err == nil {
			t.Fatalf("after Prepare with %s the task is held: %+v", tc.name, ti)
		}
	}

	if err := e.Prepare(ctx, task, files, nil); err != nil {
		t.Fatalf("Prepare = %v", err)
	}
	files[0].Data[0] = 'X' // the caller's buffer is its own
	got := e.Files("t1")
	if len(got) != 2 || string(got[0].GetData()) != "pw" || !proto.Equal(got[1], files[1]) {
		t.Fatalf("Files = %v, want the task's two files", got)
	}
	got[1].Data = nil // the copy is the caller's
	if again := e.Files("t1"); string(again[1].GetData()) != "port = 1" {
		t.Errorf("Files after its result changed = %v", again)
	}
	if err := e.Remove(ctx, "t1"); err != nil {
		t.Fatal(err)
	}
	if got := e.Files("t1"); got != nil {
		t.Errorf("Files after Remove = %v, want nil", got)
	}
}
