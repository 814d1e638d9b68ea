package cluster_test

// The end-to-end harness of cluster mode (issue #13): eventsrv instances are
// real processes, built once per test binary from ./cmd/eventsrv (with
// -race when the tests are); NATS runs inside the test process
// (internal/natstest); subscribers are WebSocket clients that resume on
// another instance when theirs goes; publishers POST round-robin.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"go.uber.org/goleak"

	"eventsrv/history"
	"eventsrv/internal/natstest"
)

// token is the one token of every instance's tokens file (full access).
const token = "e2e-token-0123456789abcdef"

var (
	buildOnce sync.Once
	buildDir  string
	binPath   string
	buildErr  error
	buildTime time.Duration
)

// TestMain removes the built binary and then checks that no goroutine of
// the tests (subscribers, HTTP connections, NATS servers and clients) is
// left behind.
func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	if code == 0 {
		if err := goleak.Find(natstest.IgnoreGoroutines()...); err != nil {
			fmt.Fprintf(os.Stderr, "goleak: goroutines left after the tests: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}

// eventsrvBinary builds ./cmd/eventsrv once per test binary and returns
// its path.
func eventsrvBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		start := time.Now()
		goTool, err := exec.LookPath("go")
		if err != nil {
			goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
		}
		if buildDir, buildErr = os.MkdirTemp("", "eventsrv-e2e-"); buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "eventsrv")
		args := []string{"build", "-o", binPath}
		if raceEnabled {
			args = append(args, "-race")
		}
		cmd := exec.Command(goTool, append(args, "eventsrv/cmd/eventsrv")...)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		buildTime = time.Since(start)
	})
	if buildErr != nil {
		t.Fatalf("building eventsrv: %v", buildErr)
	}
	return binPath
}

// ---------------------------------------------------------------------------
// Instances

// instance is one eventsrv process.
type instance struct {
	t      *testing.T
	name   string
	env    []string
	cmd    *exec.Cmd
	logs   *logLines
	exited chan struct{}
	err    error // the process's exit, once exited is closed

	listenURL string // http://127.0.0.1:port
	wsURL     string // ws://127.0.0.1:port/
	dead      atomic.Bool

	launched, ready time.Time // when it was started, and first ready
}

// instanceEnv is the environment of an instance: the harness's settings,
// then extra (later ones win).
func instanceEnv(t *testing.T, extra map[string]string) []string {
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"BIND_ADDRESS":    "127.0.0.1",
		"LISTEN_PORT":     "0",
		"BROADCAST_PORT":  "0",
		"METRICS_ADDRESS": "off",
		"TOKENS_FILE":     tokens,
		"LOG_FORMAT":      "json",
		"PATH":            os.Getenv("PATH"),
	}
	for k, v := range extra {
		vars[k] = v
	}
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// launch starts an instance's process; wait makes sure it serves. The
// process is stopped (SIGTERM, then SIGKILL) when the test ends, and its
// log is shown if the test failed; a data race it reports fails the test.
func launch(t *testing.T, name string, env []string) *instance {
	t.Helper()
	in := &instance{t: t, name: name, env: env, logs: newLogLines(), exited: make(chan struct{}), launched: time.Now()}
	in.cmd = exec.Command(eventsrvBinary(t))
	in.cmd.Env = env
	in.cmd.Stdout = in.logs
	in.cmd.Stderr = in.logs
	if err := in.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() {
		in.err = in.cmd.Wait()
		close(in.exited)
	}()
	t.Cleanup(func() {
		in.terminate(20 * time.Second)
		logs := in.logs.String()
		if strings.Contains(logs, "WARNING: DATA RACE") {
			t.Errorf("instance %s reported a data race:\n%s", name, logs)
		} else if t.Failed() {
			t.Logf("log of instance %s (%s):\n%s", name, in.exitString(), tail(logs, 150))
		}
	})
	return in
}

// waitServing waits for the instance's two servers and for /readyz 200.
func (in *instance) waitServing(timeout time.Duration) {
	t := in.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		listen, broadcast := in.logs.addrs()
		if listen != "" && broadcast != "" {
			in.listenURL, in.wsURL = "http://"+listen, "ws://"+broadcast+"/"
			break
		}
		select {
		case <-in.exited:
			t.Fatalf("instance %s exited before serving (%s):\n%s", in.name, in.exitString(), in.logs)
		case <-in.logs.changed():
		case <-time.After(time.Until(deadline)):
			t.Fatalf("instance %s did not log its addresses within %v:\n%s", in.name, timeout, in.logs)
		}
	}
	in.waitReady(time.Until(deadline))
}

// waitReady polls /readyz until it is 200.
func (in *instance) waitReady(timeout time.Duration) {
	t := in.t
	t.Helper()
	deadline := time.Now().Add(timeout)
	var status int
	var body string
	for time.Now().Before(deadline) {
		if status, body = in.readyz(); status == http.StatusOK {
			if in.ready.IsZero() {
				in.ready = time.Now()
			}
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("instance %s: /readyz is %d %s after %v", in.name, status, body, timeout)
}

var probeClient = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// readyz is GET /readyz on the listen server: the status (0 when the
// request failed) and the body.
func (in *instance) readyz() (int, string) {
	resp, err := probeClient.Get(in.listenURL + "/readyz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

// kill ends the process with SIGKILL and waits for it to be gone.
func (in *instance) kill() {
	in.dead.Store(true)
	_ = in.cmd.Process.Signal(syscall.SIGKILL)
	<-in.exited
}

// pause stops the process (SIGSTOP) without closing anything: its
// connections stay open, unanswered. Publishers and resuming subscribers
// leave it alone until cont.
func (in *instance) pause() {
	in.dead.Store(true)
	_ = in.cmd.Process.Signal(syscall.SIGSTOP)
}

// cont lets a paused process run again (SIGCONT).
func (in *instance) cont() {
	_ = in.cmd.Process.Signal(syscall.SIGCONT)
	in.dead.Store(false)
}

// terminate sends SIGTERM and waits up to timeout for the process to exit,
// then kills it. It returns the exit error (nil for status 0).
func (in *instance) terminate(timeout time.Duration) error {
	in.dead.Store(true)
	select {
	case <-in.exited:
		return in.err
	default:
	}
	_ = in.cmd.Process.Signal(syscall.SIGCONT) // in case it was paused
	_ = in.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-in.exited:
	case <-time.After(timeout):
		in.t.Errorf("instance %s did not exit within %v of SIGTERM; killed", in.name, timeout)
		_ = in.cmd.Process.Signal(syscall.SIGKILL)
		<-in.exited
	}
	return in.err
}

func (in *instance) exitString() string {
	select {
	case <-in.exited:
		if in.err == nil {
			return "exited 0"
		}
		return in.err.Error()
	default:
		return "running"
	}
}

func tail(s string, lines int) string {
	ls := strings.Split(s, "\n")
	if len(ls) <= lines {
		return s
	}
	return fmt.Sprintf("[%d lines before]\n%s", len(ls)-lines, strings.Join(ls[len(ls)-lines:], "\n"))
}

// logLines collects a process's output line by line and picks out the
// addresses of its servers.
type logLines struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	partial   []byte
	lines     []string
	listen    string
	broadcast string
	notify    chan struct{}
}

func newLogLines() *logLines { return &logLines{notify: make(chan struct{})} }

func (l *logLines) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	l.partial = append(l.partial, p...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		var rec struct{ Msg, Server, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "serving" {
			switch rec.Server {
			case "listen":
				l.listen = rec.Addr
			case "broadcast":
				l.broadcast = rec.Addr
			}
		}
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return len(p), nil
}

// changed is closed at the next write.
func (l *logLines) changed() <-chan struct{} {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.notify
}

func (l *logLines) addrs() (listen, broadcast string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.listen, l.broadcast
}

// count is how many lines hold every one of subs.
func (l *logLines) count(subs ...string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
next:
	for _, line := range l.lines {
		for _, s := range subs {
			if !strings.Contains(line, s) {
				continue next
			}
		}
		n++
	}
	return n
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// startup says how long each instance took to be ready, and how often it
// timed out creating the stream (see startFleetHow).
func (f *fleet) startup() string {
	var parts []string
	for _, in := range f.live() {
		p := fmt.Sprintf("%s %v", in.name, in.ready.Sub(in.launched).Round(time.Millisecond))
		if n := in.logs.count(`"create or update stream`, "deadline exceeded"); n > 0 {
			p += fmt.Sprintf(" (%d stream create timeouts)", n)
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// fleet is the instances of a test, in order, for round-robin.
type fleet struct {
	mu  sync.Mutex
	all []*instance
	rr  int
}

// startFleet starts n instances with env (launched together, then waited
// for), named <prefix>0, <prefix>1, ...
func startFleet(t *testing.T, n int, extra map[string]string) *fleet {
	t.Helper()
	return startFleetHow(t, n, extra, false)
}

// startFleetHow is startFleet; together launches them all at once.
func startFleetHow(t *testing.T, n int, extra map[string]string, together bool) *fleet {
	t.Helper()
	f := &fleet{}
	for i := range n {
		f.all = append(f.all, launch(t, "i"+strconv.Itoa(i), instanceEnv(t, extra)))
		if i == 0 && !together {
			// The first creates the stream. Instances that create it at
			// the same moment often wait: JetStream may leave identical
			// concurrent creates unanswered, and they time out (5 s, see
			// cluster.ensureStream). TestE2EIdempotency starts its
			// instances together and logs it.
			f.all[0].waitServing(60 * time.Second)
		}
	}
	for _, in := range f.all {
		if in.listenURL == "" {
			in.waitServing(60 * time.Second)
		}
	}
	return f
}

func (f *fleet) add(in *instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.all = append(f.all, in)
}

func (f *fleet) get(i int) *instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.all[i]
}

func (f *fleet) live() []*instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	var up []*instance
	for _, in := range f.all {
		if !in.dead.Load() {
			up = append(up, in)
		}
	}
	return up
}

// next is the next live instance round-robin, nil when none is.
func (f *fleet) next() *instance {
	up := f.live()
	if len(up) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.rr++
	return up[f.rr%len(up)]
}

// after is the live instance after prev in order, another one than prev
// when there is one: where a subscriber that lost prev reconnects.
func (f *fleet) after(prev *instance) *instance {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := slices.Index(f.all, prev)
	for k := 1; k <= len(f.all); k++ {
		if in := f.all[(i+k)%len(f.all)]; !in.dead.Load() {
			return in
		}
	}
	return nil
}

// ---------------------------------------------------------------------------
// Publishing

// answer is what a POST /event got.
type answer struct {
	status     int
	code       string
	id         string
	duplicate  bool
	retryAfter string
	body       string
	err        error // transport error: no answer
}

func (a answer) String() string {
	if a.err != nil {
		return "error: " + a.err.Error()
	}
	return fmt.Sprintf("%d %s", a.status, a.body)
}

func newHTTPClient(t *testing.T) *http.Client {
	tr := &http.Transport{MaxIdleConnsPerHost: 16}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Timeout: 15 * time.Second, Transport: tr}
}

// post publishes event with data to in, with an Idempotency-Key unless key
// is empty.
func post(client *http.Client, in *instance, key, event, data string) answer {
	body, _ := json.Marshal(map[string]any{"event": event, "data": json.RawMessage(data)})
	req, err := http.NewRequest(http.MethodPost, in.listenURL+"/event", bytes.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Authorization", "Basic "+token)
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{err: err}
	}
	a := answer{status: resp.StatusCode, body: strings.TrimSpace(string(b)), retryAfter: resp.Header.Get("Retry-After")}
	var parsed struct {
		Code      string
		ID        string
		Duplicate bool
	}
	if err := json.Unmarshal(b, &parsed); err != nil {
		a.err = fmt.Errorf("answer %q is not JSON: %w", b, err)
		return a
	}
	a.code, a.id, a.duplicate = parsed.Code, parsed.ID, parsed.Duplicate
	return a
}

// pubRec is one event a test published: n is unique to it and is its data
// ({"n":n}), so that deliveries can be matched to it.
type pubRec struct {
	n     int
	name  string
	id    string // once acknowledged
	acked bool
}

// ledger is everything published in a test.
type ledger struct {
	mu   sync.Mutex
	next int
	recs map[int]*pubRec
	// ackTimes is when each OK arrived, per publisher, to measure stalls.
	ackTimes map[int][]time.Time
}

func newLedger() *ledger { return &ledger{recs: map[int]*pubRec{}, ackTimes: map[int][]time.Time{}} }

func (l *ledger) newEvent(name string) *pubRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.next++
	r := &pubRec{n: l.next, name: name}
	l.recs[r.n] = r
	return r
}

func (l *ledger) ack(publisher int, r *pubRec, id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r.id, r.acked = id, true
	l.ackTimes[publisher] = append(l.ackTimes[publisher], time.Now())
}

func (l *ledger) acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, r := range l.recs {
		if r.acked {
			n++
		}
	}
	return n
}

func (l *ledger) get(n int) (pubRec, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	r, ok := l.recs[n]
	if !ok {
		return pubRec{}, false
	}
	return *r, true
}

func (l *ledger) all() []pubRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]pubRec, 0, len(l.recs))
	for _, r := range l.recs {
		out = append(out, *r)
	}
	slices.SortFunc(out, func(a, b pubRec) int { return a.n - b.n })
	return out
}

func dataOf(n int) string { return `{"n":` + strconv.Itoa(n) + `}` }

// publishers post events flat out, round-robin over the live instances,
// until stopped.
type publishers struct {
	stop chan struct{}
	wg   sync.WaitGroup
	// failures are POSTs without an OK (transport errors and refusals), for
	// the log.
	failures atomic.Int64
	mu       sync.Mutex
	errs     []string // answers that are wrong whatever happens
}

// publishOpts says how publishers behave.
type publishOpts struct {
	n     int      // publishers
	names []string // event names, used in turn
	// retry makes a publisher retry an event without an OK, with the same
	// Idempotency-Key, on the next instance, until it gets one; otherwise
	// it moves on to the next event (which may or may not be stored).
	retry bool
	// onAnswer, when set, sees every answer with the instance it came from.
	onAnswer func(in *instance, r *pubRec, a answer)
}

func startPublishers(t *testing.T, f *fleet, l *ledger, client *http.Client, o publishOpts) *publishers {
	p := &publishers{stop: make(chan struct{})}
	for i := range o.n {
		p.wg.Go(func() {
			k := i
			for {
				select {
				case <-p.stop:
					return
				default:
				}
				r := l.newEvent(o.names[k%len(o.names)])
				k++
				key := fmt.Sprintf("%s-%d", t.Name(), r.n)
				// Retried until it is acknowledged, even once stopped, so
				// that no event is left in doubt; within a minute.
				giveUp := time.Now().Add(time.Minute)
				for {
					in := f.next()
					if in == nil {
						return
					}
					a := post(client, in, key, r.name, dataOf(r.n))
					if o.onAnswer != nil {
						o.onAnswer(in, r, a)
					}
					if a.err == nil && a.status == http.StatusOK {
						if a.code != "OK" || a.id == "" {
							p.fail("%s: 200 without an ID: %s", in.name, a)
						}
						l.ack(i, r, a.id)
						break
					}
					p.failures.Add(1)
					if a.err == nil && (a.status != http.StatusServiceUnavailable || a.code != "UNAVAILABLE" || a.retryAfter == "") {
						p.fail("%s: a POST got %s, not 200 or 503 UNAVAILABLE with Retry-After", in.name, a)
					}
					if !o.retry {
						break
					}
					if time.Now().After(giveUp) {
						p.fail("event %d (%q) not acknowledged within a minute; last answer %s", r.n, r.name, a)
						return
					}
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return p
}

func (p *publishers) fail(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.errs = append(p.errs, fmt.Sprintf(format, args...))
}

// halt stops the publishers and reports the answers that were wrong.
func (p *publishers) halt(t *testing.T) {
	t.Helper()
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, e := range p.errs {
		t.Error(e)
	}
}

// publishOK publishes one event, retrying with the same key on the next
// instance until it is acknowledged (within timeout).
func publishOK(t *testing.T, f *fleet, l *ledger, client *http.Client, name string, timeout time.Duration) pubRec {
	t.Helper()
	r := l.newEvent(name)
	key := fmt.Sprintf("%s-%d", t.Name(), r.n)
	deadline := time.Now().Add(timeout)
	var last answer
	for time.Now().Before(deadline) {
		in := f.next()
		last = post(client, in, key, name, dataOf(r.n))
		if last.err == nil && last.status == http.StatusOK {
			l.ack(-1, r, last.id)
			return *r
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("publishing %q: no OK within %v; last answer %s", name, timeout, last)
	return pubRec{}
}

// ---------------------------------------------------------------------------
// Subscribing

// delivery is one event frame a subscriber received.
type delivery struct {
	id    string
	hid   history.ID
	name  string
	n     int
	conn  int // which of the subscriber's connections, from 1
	at    time.Time
	where string // the instance
}

// initRec is one init reply a subscriber received.
type initRec struct {
	where     string
	since     string
	position  string
	recovered bool
	replayed  int
	at        time.Time
}

// subscriber is a WebSocket client of names that keeps its last ID by the
// protocol's rule and, when its connection drops, resumes with it on the
// next live instance.
type subscriber struct {
	t     *testing.T
	label string
	home  string // the instance of its first connection
	names []string
	f     *fleet

	mu       sync.Mutex
	got      []delivery
	inits    []initRec
	drops    []string // why each connection ended
	errs     []string // protocol violations
	last     string
	conn     *websocket.Conn
	conns    int
	stopping bool

	stop chan struct{}
	done chan struct{}
}

// subscribe starts a subscriber of names (and "end", the fence every test
// publishes last) on in, and waits for its first init reply. It is stopped
// when the test ends.
func subscribe(t *testing.T, f *fleet, in *instance, label string, names ...string) *subscriber {
	t.Helper()
	s := &subscriber{t: t, label: label, home: in.name, names: append(slices.Clone(names), "end"), f: f,
		stop: make(chan struct{}), done: make(chan struct{})}
	go s.run(in)
	t.Cleanup(s.halt)
	s.waitFor(t, 30*time.Second, "its first init reply", func() bool { return len(s.inits) > 0 })
	return s
}

func (s *subscriber) run(in *instance) {
	defer close(s.done)
	for {
		err := s.session(in)
		s.mu.Lock()
		stopping := s.stopping
		if !stopping && err != nil {
			s.drops = append(s.drops, fmt.Sprintf("%s: %v", in.name, err))
		}
		s.mu.Unlock()
		if stopping {
			return
		}
		select {
		case <-s.stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if next := s.f.after(in); next != nil {
			in = next
		}
	}
}

// session is one connection: the init with the last ID, then its reply,
// then events, until the connection ends.
func (s *subscriber) session(in *instance) error {
	d := websocket.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := d.Dial(in.wsURL, nil)
	if err != nil {
		return err
	}
	resp.Body.Close()
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		c.Close()
		return nil
	}
	s.conn = c
	s.conns++
	connNo := s.conns
	since := s.last
	s.mu.Unlock()
	defer c.Close()

	init, _ := json.Marshal(map[string]any{"authentication": "Basic " + token, "events": s.names, "since": since})
	if err := c.WriteMessage(websocket.TextMessage, init); err != nil {
		return err
	}
	var position string
	pending, replying := 0, true
	for {
		_, msg, err := c.ReadMessage()
		if err != nil {
			return err
		}
		var m struct {
			Type, Code, ID, Event, Message string
			Recovered                      *bool
			Replayed                       *int
			Data                           struct{ N int }
		}
		if err := json.Unmarshal(msg, &m); err != nil {
			s.violation("%s: not JSON: %q", in.name, msg)
			continue
		}
		switch {
		case m.Type == "init" && replying:
			replying = false
			if m.Code != "OK" || m.Recovered == nil || m.Replayed == nil || m.ID == "" {
				s.violation("%s: init reply %s", in.name, msg)
				return fmt.Errorf("init refused: %s", msg)
			}
			position, pending = m.ID, *m.Replayed
			s.mu.Lock()
			s.inits = append(s.inits, initRec{where: in.name, since: since, position: m.ID,
				recovered: *m.Recovered, replayed: pending, at: time.Now()})
			if pending == 0 {
				s.last = position
			}
			s.mu.Unlock()
		case m.Type == "event" && !replying:
			hid, err := history.ParseID(m.ID)
			if err != nil {
				s.violation("%s: event with a bad ID: %s", in.name, msg)
			}
			s.mu.Lock()
			s.got = append(s.got, delivery{id: m.ID, hid: hid, name: m.Event, n: m.Data.N, conn: connNo, at: time.Now(), where: in.name})
			s.last = m.ID
			if pending > 0 {
				if pending--; pending == 0 {
					s.last = position
				}
			}
			s.mu.Unlock()
		default:
			s.violation("%s: unexpected frame (before the init reply: %v): %s", in.name, replying, msg)
		}
	}
}

func (s *subscriber) violation(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

// halt closes the connection and waits for the subscriber to end.
func (s *subscriber) halt() {
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		<-s.done
		return
	}
	s.stopping = true
	close(s.stop)
	if s.conn != nil {
		s.conn.Close()
	}
	s.mu.Unlock()
	<-s.done
}

// waitFor polls cond, under the subscriber's lock, until it holds.
func (s *subscriber) waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s.mu.Lock()
		ok := cond()
		s.mu.Unlock()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("subscriber %s: no %s within %v (got %d events, inits %+v, drops %v)",
				s.label, what, timeout, len(s.got), s.inits, s.drops)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// has reports whether the subscriber has received the event numbered n.
func (s *subscriber) hasLocked(n int) bool {
	for i := len(s.got) - 1; i >= 0; i-- {
		if s.got[i].n == n {
			return true
		}
	}
	return false
}

func (s *subscriber) snapshot() (got []delivery, inits []initRec, drops, errs []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got), slices.Clone(s.inits), slices.Clone(s.drops), slices.Clone(s.errs)
}

// fence publishes the "end" event and waits until every subscriber has it:
// every event published before it has then arrived, in the one order.
func fence(t *testing.T, f *fleet, l *ledger, client *http.Client, subs []*subscriber) pubRec {
	t.Helper()
	end := publishOK(t, f, l, client, "end", 30*time.Second)
	for _, s := range subs {
		s.waitFor(t, 30*time.Second, "end event "+end.id, func() bool { return s.hasLocked(end.n) })
	}
	return end
}

// checkOptions says what checkDeliveries may tolerate.
type checkOptions struct {
	// unackedOnce lets a subscriber receive, at most once, events whose
	// POST got no OK (the instance died with it, or it timed out).
	unackedOnce bool
	// allRecovered requires every init reply to say recovered:true.
	allRecovered bool
}

// checkDeliveries checks each subscriber against what was published: in
// one order (IDs strictly increasing), every acknowledged event of its
// names with the ID its POST got, nothing else but (if allowed) unacked
// events, nothing twice; and that the same ID is the same event for all.
func checkDeliveries(t *testing.T, l *ledger, subs []*subscriber, o checkOptions) {
	t.Helper()
	errorf := errorBudget(t, "acknowledgements", 10)
	byID := map[string]int{}
	for _, r := range l.all() {
		if r.acked {
			if prev, ok := byID[r.id]; ok {
				errorf("events %d and %d were both acknowledged with ID %s", prev, r.n, r.id)
			}
			byID[r.id] = r.n
		}
	}
	errorf(done)
	for _, s := range subs {
		errorf := errorBudget(t, "subscriber "+s.label, 10)
		got, inits, _, errs := s.snapshot()
		for _, e := range errs {
			errorf("%s", e)
		}
		if o.allRecovered {
			for _, in := range inits {
				if !in.recovered {
					errorf("init on %s with since %q was not recovered: %+v", in.where, in.since, in)
				}
			}
		}
		seen := map[int]int{}
		var prev delivery
		for i, d := range got {
			if i > 0 && !idLess(prev.hid, d.hid) {
				errorf("event %s (n=%d, conn %d on %s) after %s (n=%d, conn %d on %s): out of order or twice",
					d.id, d.n, d.conn, d.where, prev.id, prev.n, prev.conn, prev.where)
			}
			prev = d
			if !subscribed(s.names, d.name) {
				errorf("got event %s of %q, not subscribed", d.id, d.name)
			}
			seen[d.n]++
			if seen[d.n] == 2 {
				errorf("event n=%d received twice (the second as %s on %s)", d.n, d.id, d.where)
			}
			r, ok := l.get(d.n)
			switch {
			case !ok:
				errorf("event %s with n=%d that no one published", d.id, d.n)
			case r.name != d.name:
				errorf("event %s n=%d is %q, published as %q", d.id, d.n, d.name, r.name)
			case r.acked && r.id != d.id:
				errorf("event n=%d delivered as %s, acknowledged as %s", d.n, d.id, r.id)
			case !r.acked && !o.unackedOnce:
				errorf("event %s n=%d was never acknowledged", d.id, d.n)
			}
			if other, ok := byID[d.id]; ok && other != d.n {
				errorf("ID %s is event n=%d here, n=%d elsewhere", d.id, d.n, other)
			} else if !ok {
				byID[d.id] = d.n
			}
		}
		var missed []history.ID
		for _, r := range l.all() {
			if r.acked && subscribed(s.names, r.name) && seen[r.n] == 0 {
				errorf("missed acknowledged event %s n=%d (%q)", r.id, r.n, r.name)
				id, _ := history.ParseID(r.id)
				missed = append(missed, id)
			}
		}
		errorf(done)
		if len(missed) > 0 {
			t.Errorf("subscriber %s (on %s) missed %d acknowledged events, in %s; it received %s",
				s.label, s.home, len(missed), seqRanges(missed), seqRanges(idsOf(got)))
		}
	}
}

func idsOf(got []delivery) []history.ID {
	ids := make([]history.ID, len(got))
	for i, d := range got {
		ids[i] = d.hid
	}
	return ids
}

// seqRanges describes IDs by their sequence numbers, as ranges: the
// ranges a subscriber received or missed ("3-17, 20-25 of epoch E"), with
// the gaps in them up to 2 wide taken in, since each subscriber gets only
// the events of its names.
func seqRanges(ids []history.ID) string {
	if len(ids) == 0 {
		return "nothing"
	}
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b history.ID) int {
		if idLess(a, b) {
			return -1
		}
		if idLess(b, a) {
			return 1
		}
		return 0
	})
	var parts []string
	from := ids[0]
	prev := ids[0]
	flush := func() {
		parts = append(parts, fmt.Sprintf("%d-%d", from.Seq, prev.Seq))
	}
	for _, id := range ids[1:] {
		if id.Epoch != prev.Epoch || id.Seq > prev.Seq+3 {
			flush()
			from = id
		}
		prev = id
	}
	flush()
	if len(parts) > 12 {
		parts = append(parts[:6], append([]string{fmt.Sprintf("(%d ranges)", len(parts)-12)}, parts[len(parts)-6:]...)...)
	}
	return fmt.Sprintf("seqs %s (epoch %d)", strings.Join(parts, ", "), ids[0].Epoch)
}

// subscribed reports whether a subscription to names gets event name: a
// name ending in "*" is a pattern, for every name with the prefix before
// it ("*" for all).
func subscribed(names []string, name string) bool {
	for _, n := range names {
		if n == name || strings.HasSuffix(n, "*") && strings.HasPrefix(name, n[:len(n)-1]) {
			return true
		}
	}
	return false
}

// done ends an errorBudget.
const done = "\x00done"

// errorBudget reports the first max errors of what, and then how many
// there were in all when called with done.
func errorBudget(t *testing.T, what string, max int) func(format string, args ...any) {
	n := 0
	return func(format string, args ...any) {
		t.Helper()
		if format == done {
			if n > max {
				t.Errorf("%s: %d errors in all", what, n)
			}
			return
		}
		if n++; n <= max {
			t.Errorf("%s: "+format, append([]any{what}, args...)...)
		}
	}
}

// idLess orders IDs: by epoch (a stream's creation time), then sequence.
func idLess(a, b history.ID) bool {
	return a.Epoch < b.Epoch || a.Epoch == b.Epoch && a.Seq < b.Seq
}

// longestGap is the longest time between consecutive times within
// [from, to], counting from from and up to to.
func longestGap(times []time.Time, from, to time.Time) time.Duration {
	var gap time.Duration
	prev := from
	for _, at := range times {
		if at.Before(from) {
			continue
		}
		if at.After(to) {
			break
		}
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	return max(gap, to.Sub(prev))
}

// deliveryTimes are the times at which s received events.
func (s *subscriber) deliveryTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	ts := make([]time.Time, len(s.got))
	for i, d := range s.got {
		ts[i] = d.at
	}
	return ts
}

// ackTimes are the times at which any publisher got an OK, sorted.
func (l *ledger) allAckTimes() []time.Time {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ts []time.Time
	for _, p := range l.ackTimes {
		ts = append(ts, p...)
	}
	slices.SortFunc(ts, func(a, b time.Time) int { return a.Compare(b) })
	return ts
}

// withTimeout is a context for a JetStream API call.
func withTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), d)
	t.Cleanup(cancel)
	return ctx
}
