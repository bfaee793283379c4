package dashboard

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/shoalhq/shoal/kernel/events"
	"github.com/shoalhq/shoal/kernel/state"
	controlv1 "github.com/shoalhq/shoal/sdk/proto/shoal/control/v1"
)

// coalesceWindow is how long a change waits for others before it is sent:
// a service scaled by a thousand writes its tasks in a few Raft entries and
// their states in many more; 100 ms packs them into few messages and still
// leaves most of the second the page has to show a change.
const coalesceWindow = 100 * time.Millisecond

// maxBatch bounds the objects of one message, so a burst is sent in parts
// the page can apply between frames.
const maxBatch = 2000

// keepAlive is how often an idle stream sends a comment: proxies close
// connections idle for a minute or so, and it checks that the client is
// still there.
const keepAlive = 15 * time.Second

// leaderCheck is how often a stream checks whether the leader changed: a
// change of leader is no change of the store, so no event carries it.
const leaderCheck = time.Second

type accessKey struct{}

func withAccess(ctx context.Context, a access) context.Context {
	return context.WithValue(ctx, accessKey{}, a)
}

func isAdmin(ctx context.Context) bool { a, _ := ctx.Value(accessKey{}).(access); return a == admin }

func (h *Handler) snapshot(ctx context.Context) (*snapshot, error) {
	s, err := takeSnapshot(h.deps.Store)
	if err != nil {
		return nil, err
	}
	s.Leader, s.Self, s.Admin = h.deps.Leader(), h.deps.Self, isAdmin(ctx)
	return s, nil
}

func (h *Handler) state(w http.ResponseWriter, r *http.Request) {
	s, err := h.snapshot(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, s)
}

// change is one message of the events stream: the events and the current
// view of each object they changed (or its removal).
type change struct {
	Index   uint64            `json:"index"`
	Leader  string            `json:"leader"`
	Events  []json.RawMessage `json:"events,omitempty"`
	Objects []object          `json:"objects,omitempty"`
}

// object is one changed object: its view, or Removed.
type object struct {
	Type    string          `json:"type"`
	ID      string          `json:"id"`
	Removed bool            `json:"removed,omitempty"`
	Object  json.RawMessage `json:"object,omitempty"`
}

// events streams the snapshot, then the changes. The subscription is taken
// first: a change made while the snapshot is read is sent again after it,
// which the page applies as a no-op.
func (h *Handler) events(w http.ResponseWriter, r *http.Request) {
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported")
		return
	}
	sub := h.deps.Hub.Subscribe(events.Filter{})
	defer sub.Close()
	snap, err := h.snapshot(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	startSSE(w)
	if err := sendSSE(w, "snapshot", snap); err != nil {
		return
	}
	flusher.Flush()

	leader := snap.Leader
	alive := time.NewTicker(keepAlive)
	defer alive.Stop()
	lead := time.NewTicker(leaderCheck)
	defer lead.Stop()
	for {
		var batch []*controlv1.Event
		select {
		case <-r.Context().Done():
			return
		case <-alive.C:
			if _, err := fmt.Fprint(w, ": alive\n\n"); err != nil {
				return
			}
			flusher.Flush()
			continue
		case <-lead.C:
			if l := h.deps.Leader(); l != leader {
				leader = l
				if err := sendSSE(w, "change", change{Index: indexOf(h.deps.Store), Leader: leader}); err != nil {
					return
				}
				flusher.Flush()
			}
			continue
		case ev, ok := <-sub.Events():
			if !ok {
				// Dropped (too slow) or the manager stops: the client
				// reconnects and starts from a new snapshot.
				sendSSE(w, "reset", map[string]string{"error": fmt.Sprint(sub.Err())})
				return
			}
			batch = append(batch, ev)
		}
		batch, open := collect(r.Context(), sub, batch)
		for len(batch) > 0 {
			n := min(len(batch), maxBatch)
			c, err := h.change(batch[:n])
			if err != nil {
				h.log.Warn("dashboard change", "err", err)
				return
			}
			leader = c.Leader
			if err := sendSSE(w, "change", c); err != nil {
				return
			}
			flusher.Flush()
			batch = batch[n:]
		}
		if !open {
			return
		}
	}
}

// collect adds to batch the events that arrive within coalesceWindow.
func collect(ctx context.Context, sub *events.Subscription, batch []*controlv1.Event) ([]*controlv1.Event, bool) {
	t := time.NewTimer(coalesceWindow)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return batch, false
		case <-t.C:
			return batch, true
		case ev, ok := <-sub.Events():
			if !ok {
				return batch, false
			}
			batch = append(batch, ev)
		}
	}
}

func indexOf(st *state.Store) (i uint64) {
	st.View(func(tx *state.ReadTx) { i = tx.Index() })
	return i
}

// change reads the current view of the objects evs changed, in one View.
func (h *Handler) change(evs []*controlv1.Event) (change, error) {
	c := change{Leader: h.deps.Leader()}
	type key struct{ typ, id string }
	seen := map[key]bool{}
	var err error
	h.deps.Store.View(func(tx *state.ReadTx) {
		c.Index = tx.Index()
		for _, ev := range evs {
			b, e := jsonOpts.Marshal(ev)
			if e != nil {
				err = e
				return
			}
			c.Events = append(c.Events, b)
			k := key{ev.GetType(), ev.GetId()}
			if seen[k] {
				continue
			}
			seen[k] = true
			var m proto.Message
			switch k.typ {
			case events.TypeTask:
				if t := tx.Task(k.id); t != nil {
					m = viewTask(t)
				}
			case events.TypeService:
				if s := tx.Service(k.id); s != nil {
					m = viewService(s)
				}
			case events.TypeNode:
				if n := tx.Node(k.id); n != nil {
					m = viewNode(n)
				}
			case events.TypeNetwork:
				if n := tx.Network(k.id); n != nil {
					m = viewNetwork(n)
				}
			case events.TypeSecret:
				if s := tx.Secret(k.id); s != nil {
					m = viewSecret(s)
				}
			case events.TypeCluster:
				if cl := tx.Cluster(); cl != nil {
					m = viewCluster(cl)
				}
			default:
				continue // configs: not shown
			}
			o := object{Type: k.typ, ID: k.id, Removed: m == nil}
			if m != nil {
				if o.Object, err = marshal(m); err != nil {
					return
				}
			}
			c.Objects = append(c.Objects, o)
		}
	})
	return c, err
}

func startSSE(w http.ResponseWriter) {
	hd := w.Header()
	hd.Set("Content-Type", "text/event-stream")
	hd.Set("Cache-Control", "no-store")
	// nginx buffers responses unless told not to.
	hd.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

func sendSSE(w http.ResponseWriter, event string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b)
	return err
}

// maxTail bounds the lines a logs stream starts with per task.
const maxTail = 10000

// defaultTail is what the page asks for: a screenful or so per task.
const defaultTail = 100

// logLine is one line as the page shows it.
type logLine struct {
	Task   string `json:"task"`
	Stream string `json:"stream"`
	Time   string `json:"time"`
	Text   string `json:"text"`
}

// logBatch is one message of a logs stream.
type logBatch struct {
	Tasks  map[string]string `json:"tasks,omitempty"` // task ID: "SERVICE.SLOT@NODE"
	Lines  []logLine         `json:"lines,omitempty"`
	Errors []string          `json:"errors,omitempty"`
}

// logs follows a service's logs through the control API's TaskLogs.
func (h *Handler) logs(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if why := checkRef(ref); why != "" {
		writeError(w, http.StatusBadRequest, "service: "+why)
		return
	}
	tail := int64(defaultTail)
	if s := r.URL.Query().Get("tail"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 || n > maxTail {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("tail: must be a number between 0 and %d, got %q", maxTail, s))
			return
		}
		tail = n
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming is not supported")
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stream, err := h.deps.Control.TaskLogs(ctx, &controlv1.TaskLogsRequest{Service: ref, Follow: true, Tail: proto.Int64(tail)})
	if err == nil {
		// The first answer tells whether the service exists: read it
		// before answering 200.
		var first *controlv1.TaskLogsResponse
		first, err = stream.Recv()
		if err == nil {
			startSSE(w)
			for resp := first; ; {
				if err := sendSSE(w, "logs", toBatch(resp)); err != nil {
					return
				}
				flusher.Flush()
				if resp, err = stream.Recv(); err != nil {
					sendSSE(w, "end", map[string]string{"error": errorText(err)})
					return
				}
			}
		}
	}
	code, msg := httpError(err)
	writeError(w, code, msg)
}

func toBatch(resp *controlv1.TaskLogsResponse) logBatch {
	var b logBatch
	for _, t := range resp.GetTasks() {
		if b.Tasks == nil {
			b.Tasks = map[string]string{}
		}
		b.Tasks[t.GetTaskId()] = fmt.Sprintf("%s.%d@%s", t.GetServiceName(), t.GetSlot(), t.GetNodeName())
	}
	for _, l := range resp.GetLines() {
		stream := "stdout"
		if l.GetStream() == controlv1.LogStream_LOG_STREAM_STDERR {
			stream = "stderr"
		}
		b.Lines = append(b.Lines, logLine{Task: l.GetTaskId(), Stream: stream, Time: l.GetTime().AsTime().UTC().Format(time.RFC3339Nano),
			Text: strings.ToValidUTF8(string(l.GetData()), "\uFFFD")})
	}
	for _, e := range resp.GetErrors() {
		who := e.GetTaskId()
		if who == "" {
			who = "node " + e.GetNodeId()
		}
		b.Errors = append(b.Errors, who+": "+e.GetError())
	}
	return b
}
