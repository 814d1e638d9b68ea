package listen

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"eventsrv/internal/jsonhttp"
)

// Task streams: the task tracker's model. A producer POSTs /task with a
// body it writes as the job runs, one line at a time: the first line is the
// task's title, each later one a message, or a JSON object with any of
// "progress" (0 to 1), "message" and "state" ("done" or "failed", which
// end the task). The server gives the task an ID and publishes an event
// task.<id> per line, with data
//
//	{"title":"…","state":"running","progress":0.5,"message":"…"}
//
// A body that ends cleanly ends the task "done" (unless a line said
// otherwise); a connection that breaks first ends it "failed" with
// "producer disconnected", so that a crashed producer is never shown as
// running forever.

// MaxTaskLineBytes bounds one line of a task stream.
const MaxTaskLineBytes = 64 << 10

// taskUpdate is the data of a task.<id> event.
type taskUpdate struct {
	Title    string   `json:"title"`
	State    string   `json:"state"`
	Progress *float64 `json:"progress,omitempty"`
	Message  string   `json:"message"`
}

// taskLine is a line of a task stream that is a JSON object.
type taskLine struct {
	Progress *float64 `json:"progress"`
	Message  *string  `json:"message"`
	State    *string  `json:"state"`
}

func newTaskID() string {
	var b [6]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return hex.EncodeToString(b[:])
}

// task serves POST /task.
func (h *handler) task(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		h.answer(w, CodeMethodNotAllowed, "start a task stream with POST /task")
		return
	}
	perms, ok := h.authenticate(w, r)
	if !ok {
		return
	}
	id := newTaskID()
	name := "task." + id
	if !perms.Publish.Allows(name) {
		h.answer(w, CodeForbidden, "this token may not publish task.<id> events: give it publish=task.* in the tokens file")
		return
	}
	// A job may run for hours: READ_TIMEOUT, which bounds requests, gives
	// way to a bound on the silence between lines.
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Time{})
	idle := h.opts.TaskIdleTimeout
	if idle <= 0 {
		idle = 10 * time.Minute
	}
	br := bufio.NewReaderSize(r.Body, 4096)
	update := taskUpdate{State: "running"}
	publish := func() error {
		data, _ := json.Marshal(update) // strings and a float: cannot fail
		_, err := h.pub.Publish(name, data)
		return err
	}
	first := true
	for {
		_ = rc.SetReadDeadline(time.Now().Add(idle))
		line, err := readTaskLine(br)
		if line != "" { // blank lines say nothing
			if first {
				update.Title = line
				first = false
			} else {
				applyTaskLine(&update, line)
			}
			if perr := publish(); perr != nil {
				h.opts.Log.Warn("task event not published", "task", id, "err", perr)
				w.Header().Set("Retry-After", "1")
				h.answer(w, CodeUnavailable, "the task's events could not be published: "+perr.Error())
				return
			}
			if update.State != "running" {
				_, _ = io.Copy(io.Discard, io.LimitReader(br, MaxTaskLineBytes))
				break
			}
		}
		if errors.Is(err, io.EOF) {
			if first {
				h.answer(w, CodeInvalidBody, "the body is empty: its first line is the task's title")
				return
			}
			update.State = "done"
			if update.Progress != nil {
				done := 1.0
				update.Progress = &done
			}
			if perr := publish(); perr != nil {
				w.Header().Set("Retry-After", "1")
				h.answer(w, CodeUnavailable, "the task's end could not be published: "+perr.Error())
				return
			}
			break
		}
		if err != nil {
			reason := "producer disconnected"
			code, advice := CodeInvalidBody, "the stream broke before its end"
			if errors.Is(err, errTaskLineTooLong) {
				reason = fmt.Sprintf("a line is over %d bytes", MaxTaskLineBytes)
				advice = reason + ": split it"
			} else if errors.Is(err, errTaskLineNotUTF8) {
				reason, advice = "a line is not UTF-8", "send UTF-8 lines"
			}
			update.State, update.Message = "failed", reason
			if !first {
				_ = publish()
			}
			h.opts.Log.Info("task failed", "task", id, "remote", r.RemoteAddr, "reason", reason, "err", err)
			h.answer(w, code, advice)
			return
		}
	}
	h.opts.Log.Info("task ended", "task", id, "state", update.State)
	h.count(CodeOK)
	jsonhttp.Write(w, http.StatusOK, []byte(`{"code":"OK","id":`+jsonhttp.Quote(id)+`,"event":`+jsonhttp.Quote(name)+`,"state":`+jsonhttp.Quote(update.State)+`}`))
}

var (
	errTaskLineTooLong = errors.New("task line too long")
	errTaskLineNotUTF8 = errors.New("task line not UTF-8")
)

// readTaskLine reads one line without its end (\n or \r\n). At the end of
// the body it returns the last line, if any, with io.EOF.
func readTaskLine(br *bufio.Reader) (string, error) {
	var b []byte
	for {
		chunk, err := br.ReadSlice('\n')
		if len(b)+len(chunk) > MaxTaskLineBytes+2 {
			return "", errTaskLineTooLong
		}
		b = append(b, chunk...)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		line := strings.TrimRight(string(b), "\r\n")
		if len(line) > MaxTaskLineBytes {
			return "", errTaskLineTooLong
		}
		if !utf8.ValidString(line) {
			return "", errTaskLineNotUTF8
		}
		return line, err
	}
}

// applyTaskLine applies a line after the title to u: a JSON object sets
// what it has; any other line is the new message.
func applyTaskLine(u *taskUpdate, line string) {
	var l taskLine
	if strings.HasPrefix(strings.TrimSpace(line), "{") && json.Unmarshal([]byte(line), &l) == nil {
		if l.Progress != nil {
			p := min(max(*l.Progress, 0), 1)
			u.Progress = &p
		}
		if l.Message != nil {
			u.Message = *l.Message
		}
		if l.State != nil && (*l.State == "done" || *l.State == "failed") {
			u.State = *l.State
		}
		return
	}
	u.Message = line
}
