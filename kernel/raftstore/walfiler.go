package raftstore

import (
	"github.com/hashicorp/raft-wal/fs"
	"github.com/hashicorp/raft-wal/segment"
	"github.com/hashicorp/raft-wal/types"
)

// truncatedTailFiler is raft-wal's own segment filer with one repair.
//
// raft-wal v0.4.0 (the latest) records a segment as sealed when it truncates
// the log's tail — which a follower does whenever a new leader overrules
// entries it had not committed — but writes no index block into the file.
// On the next start, reading that segment fails with "sealed segment has no
// index block", and hashicorp/raft panics (raft-wal issue #31). We hit it by
// SIGKILLing leaders under write load.
//
// Such a segment's frames are all intact; only the index is missing. So it
// is opened the way raft-wal opens a crashed tail: by scanning its frames to
// rebuild the offsets in memory. The segment is never appended to again: the
// WAL's state has it sealed and routes reads only to its recorded range.
type truncatedTailFiler struct {
	*segment.Filer
}

var _ types.SegmentFiler = truncatedTailFiler{}

func newTruncatedTailFiler(dir string) truncatedTailFiler {
	return truncatedTailFiler{Filer: segment.NewFiler(dir, fs.New())}
}

// Open opens a sealed segment, scanning it when it has no index block.
func (f truncatedTailFiler) Open(info types.SegmentInfo) (types.SegmentReader, error) {
	if !info.SealTime.IsZero() && info.IndexStart == 0 {
		return f.Filer.RecoverTail(info)
	}
	return f.Filer.Open(info)
}
