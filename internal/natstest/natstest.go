// Package natstest starts real nats-server instances with JetStream inside
// the test process, for eventsrv's cluster-mode tests (issue #13).
//
// It builds servers the way nats-server's own tests do: server.NewServer
// with JetStream on, a t.TempDir() store, no logging and no signal handlers;
// a cluster node also gets a ServerName, a Cluster.Name, a cluster port of
// its own and routes to all the nodes. Nothing is installed and no process
// is spawned. Ports are not left to the kernel (Port -1) but picked below
// its ephemeral range, as nats-server's cluster tests do, so that a stopped
// node always gets them back (see allocPort).
//
//	c := natstest.StartCluster(t, 3)     // 3 JetStream nodes, all ready
//	nc, _ := nats.Connect(c.URLs())
//	...
//	i := c.WaitStreamLeader(t, "EVENTS") // index of the stream's leader
//	c.Node(i).Shutdown()                 // stop it; its ports and store are kept
//	c.Node(i).Restart(t)                 // same ports, same store; waits until ready
//
// Every server is shut down by t.Cleanup, before its store directory is
// removed. A stopped server leaves no goroutine behind but for a shutdown
// race of nats-server that [IgnoreGoroutines] describes; pass its options to
// goleak.
//
// Set NATSTEST_LOG=1 (or debug, or trace) to get the servers' logs on
// stderr.
//
// # Accounts
//
// The servers configure no accounts or users, so clients land in the global
// account ("$G", [GlobalAccount]); the leader look-ups use that account.
//
// # What bounds a failover stall
//
// These are nats-server v2.15 figures (raft.go, route.go, const.go,
// server.go) and nats.go v1.55 defaults:
//
//   - A node stopped with [Server.Shutdown] (as a nats-server process does on
//     SIGTERM/SIGINT) first steps down every raft group it leads and hands
//     leadership to an up-to-date follower (raft StepDown with a leader
//     transfer). A new stream leader is then in place within tens of
//     milliseconds: no election timeout is waited for.
//   - A node that dies without that (kill -9, power loss, a partition) is
//     replaced only when a follower's election timer fires: a random 4 s to
//     9 s (minElectionTimeout, maxElectionTimeout) after it last heard the
//     leader, whose heartbeats go out every 1 s (hbInterval). A leader that
//     cannot reach a quorum steps down after 10 s (lostQuorumInterval).
//     These are unexported variables of nats-server's server package, not
//     options: they cannot be shortened from outside it (nats-server's own
//     tests assign them from inside the package).
//   - The same election timer bounds regaining quorum when a group's leader
//     was among the stopped nodes: the node left behind is a candidate that
//     cannot win, and it, or a node that comes back, campaigns only when its
//     timer fires, 4 s to 9 s later. When the leader stayed up, the nodes
//     that come back are taken in by its next heartbeats (1 s apart), with no
//     election.
//   - A follower that restarts is current again after about 3 heartbeats
//     (3 s): one to hear the meta leader, one from the stream's leader, and
//     one more after its catch-up. [Server.Restart] waits for that.
//   - A dead peer on a half-open TCP connection is detected by pings: routes
//     ping 1 s after connecting and then every Cluster.PingInterval (the
//     server's PingInterval, 2 min, capped at 30 s for routes), clients
//     every PingInterval (2 min); 2 unanswered pings (MaxPingsOut) close the
//     connection. On loopback, and with an in-process Shutdown, the closed
//     socket is seen at once, so pings matter only for partitions and hung
//     hosts. [WithPingInterval] shortens them; it is the only one of these
//     knobs that the server's options expose.
//   - Explicit routes are retried every 1 s (DEFAULT_ROUTE_RECONNECT), so a
//     restarted node is routed again within about a second.
//   - On the client side (nats.go): a connection whose server went away
//     tries the next URL of its list at once, and sleeps ReconnectWait
//     (2 s, plus up to 100 ms of jitter) only after trying the whole list.
//     A jetstream Publish retries "no responders" RetryAttempts (2) times,
//     RetryWait (250 ms) apart, and otherwise waits for the ack until its
//     context ends or for the jetstream timeout (5 s). A pull consumer's
//     Consume takes a silent server for gone after 2 idle heartbeats are
//     missed: the heartbeat is half of PullExpiry (30 s), so 30 s in all
//     (10 s for an ordered consumer, whose heartbeat is 5 s).
//
// Measured on this 2-core machine, under -race, with this package's tests
// running in parallel: a 3-node cluster is ready in 0.2 s to 1 s (median
// 0.4 s), and in about 1 start of 10 the first meta election fails and the
// cluster is started again (see [StartCluster]), up to 2.5 s in all; after
// the stream leader's Shutdown a new one leads within 30 ms to 80 ms and
// the next publish is acked at once (0.5 s more when the client has to
// reconnect); a restarted follower is ready in about 3 s; restoring quorum
// takes 1 s to 2 s when the leaders stayed up, and 3.5 s to 10.5 s when an
// election is needed.
//
// # Things these tests showed
//
//   - A publish that timed out was not necessarily refused: a leader without
//     quorum keeps the message in its log and commits it once quorum is back,
//     so the message can appear in the stream after its publisher gave up
//     (TestClusterQuorumLostAndRegained sees this most of the time). Publish
//     with a message ID (jetstream.WithMsgID) to retry safely.
//   - nats.go buffers what is published while it is reconnecting (8 MB by
//     default) and sends it after the reconnect, even if the caller's
//     context has ended meanwhile; nats.ReconnectBufSize(-1) makes such a
//     publish fail at once instead.
//   - Right after CreateStream has returned, a publish can still find no
//     responder for the stream's subjects (seen once in about 70 runs, for
//     more than the 500 ms that nats.go's two retries on "no responders"
//     wait): publish the first message with retries.
//   - A new cluster's first meta election needs the votes of all nodes (the
//     meta group bootstraps as "recovering", so empty-log votes count only
//     when every node answers), which is why it fails as often as it does.
package natstest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"go.uber.org/goleak"
)

// GlobalAccount is the account that clients of these servers use.
const GlobalAccount = "$G"

// readyTimeout bounds every wait of this package. Elections take up to 9 s,
// and a restart may need two in a row (meta group, then the stream's group).
const readyTimeout = 30 * time.Second

// Option changes a server's options before it first starts. Any function of
// *server.Options is an Option, so a test can set whatever it needs.
type Option func(*server.Options)

// WithPingInterval makes the server ping clients and routes every d, and
// close a connection after 2 unanswered pings, so a half-open connection is
// detected in about 3*d instead of minutes. It does not shorten raft
// elections (see the package doc). Keep d well above the pauses of a busy
// test process (a second or so under -race): a pong late by 2*d drops the
// connection as stale.
func WithPingInterval(d time.Duration) Option {
	return func(o *server.Options) {
		o.PingInterval = d
		o.MaxPingsOut = 2
		o.Cluster.PingInterval = d
		o.Cluster.MaxPingsOut = 2
	}
}

// Server is one nats-server with JetStream, running in the test process.
// It can be stopped and started again on the same ports and store.
type Server struct {
	mu   sync.Mutex
	opts *server.Options // ports fixed after the first start
	srv  *server.Server
	c    *Cluster // nil for a standalone server
}

// StartServer starts one standalone JetStream server with a file store in a
// fresh t.TempDir() and waits until it accepts clients and JetStream is
// ready.
func StartServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	o := baseOptions(t)
	o.ServerName = "natstest"
	o.Port = allocPort(t)
	for _, f := range opts {
		f(o)
	}
	s := &Server{opts: o}
	t.Cleanup(s.Shutdown)
	if err := s.start(readyTimeout); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	if err := s.waitJetStream(time.Now().Add(readyTimeout)); err != nil {
		t.Fatalf("natstest: %v", err)
	}
	return s
}

func baseOptions(t testing.TB) *server.Options {
	o := &server.Options{
		Host:                   "127.0.0.1", // Port: see allocPort
		NoLog:                  true,
		NoSigs:                 true,
		JetStream:              true,
		StoreDir:               t.TempDir(),
		JetStreamMaxMemory:     256 << 20,
		JetStreamMaxStore:      1 << 30,
		DisableJetStreamBanner: true,
	}
	switch os.Getenv("NATSTEST_LOG") {
	case "":
	case "trace":
		o.NoLog, o.Debug, o.Trace = false, true, true
	case "debug":
		o.NoLog, o.Debug = false, true
	default:
		o.NoLog = false
	}
	return o
}

// start creates and starts the server from s.opts and waits until it accepts
// client connections and listens for routes.
func (s *Server) start(ready time.Duration) error { return s.startWith(ready, nil) }

// startWith is start with changes to this start's copy of the options.
func (s *Server) startWith(ready time.Duration, change func(*server.Options)) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil && s.srv.Running() {
		return fmt.Errorf("%s is already running", s.opts.ServerName)
	}
	o := s.opts.Clone()
	if change != nil {
		change(o)
	}
	srv, err := server.NewServer(o)
	if err != nil {
		return fmt.Errorf("new server %s: %w", s.opts.ServerName, err)
	}
	if !o.NoLog {
		srv.SetLoggerV2(stderrLogger{name: o.ServerName}, o.Debug, o.Trace, false)
	}
	srv.Start()
	if !srv.ReadyForConnections(ready) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return fmt.Errorf("%s did not listen on its ports within %v (one taken?)", s.opts.ServerName, ready)
	}
	s.srv = srv
	return nil
}

// Inner returns the running *server.Server (or the last one, once stopped),
// for checks this package does not wrap.
func (s *Server) Inner() *server.Server {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv
}

// Name is the server's name (its ServerName option).
func (s *Server) Name() string { return s.opts.ServerName }

// URL is the server's client URL, nats://127.0.0.1:port. It stays the same
// across restarts.
func (s *Server) URL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return fmt.Sprintf("nats://%s:%d", s.opts.Host, s.opts.Port)
}

// ClusterURL is the server's route URL, nats-route://127.0.0.1:port, or ""
// for a standalone server.
func (s *Server) ClusterURL() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.clusterURLLocked()
}

func (s *Server) clusterURLLocked() string {
	if s.opts.Cluster.Port <= 0 {
		return ""
	}
	return fmt.Sprintf("nats-route://%s:%d", s.opts.Cluster.Host, s.opts.Cluster.Port)
}

// StoreDir is the directory of the server's JetStream file store.
func (s *Server) StoreDir() string { return s.opts.StoreDir }

// Running reports whether the server is running.
func (s *Server) Running() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.srv != nil && s.srv.Running()
}

// Shutdown stops the server as a nats-server process does on SIGTERM: it
// hands the raft groups it leads to other nodes, closes every connection and
// waits until all its goroutines are gone. Its ports and store directory are
// kept for [Server.Restart]. Shutting down a stopped server does nothing.
func (s *Server) Shutdown() {
	s.mu.Lock()
	srv := s.srv
	s.mu.Unlock()
	if srv == nil {
		return
	}
	srv.Shutdown()
	srv.WaitForShutdown()
}

// Restart starts a stopped server again on the same client and cluster ports
// and with the same store directory, so clients reconnect to the URL they
// had and routes re-form, and the server recovers its streams from disk.
//
// It waits until the server accepts clients and, in a cluster, until it is
// routed to every other running node. If the running nodes then make a
// quorum it also waits until the cluster is ready as [Cluster.WaitReady]
// says (a meta leader that counts every running node, each of them healthy
// and caught up, every stream and consumer led); without a quorum there is
// nothing more to wait for and it returns.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	if err := s.start(readyTimeout); err != nil {
		t.Fatalf("natstest: restart: %v", err)
	}
	deadline := time.Now().Add(readyTimeout)
	if s.c == nil {
		if err := s.waitJetStream(deadline); err != nil {
			t.Fatalf("natstest: restart: %v", err)
		}
		return
	}
	if err := s.c.waitReady(deadline); err != nil {
		t.Fatalf("natstest: restart: %v", err)
	}
}

// Restart starts the given stopped nodes again (every stopped node if none
// is given), all at once, each as [Server.Restart] does, and then waits as
// [Server.Restart] does. Starting them together saves a heartbeat or two per
// node over restarting them one by one.
func (c *Cluster) Restart(t testing.TB, nodes ...int) {
	t.Helper()
	if len(nodes) == 0 {
		for i, s := range c.nodes {
			if !s.Running() {
				nodes = append(nodes, i)
			}
		}
	}
	for _, i := range nodes {
		if err := c.nodes[i].start(readyTimeout); err != nil {
			t.Fatalf("natstest: restart: %v", err)
		}
	}
	if err := c.waitReady(time.Now().Add(readyTimeout)); err != nil {
		t.Fatalf("natstest: restart: %v", err)
	}
}

// waitJetStream polls until the server's JetStream health check passes.
func (s *Server) waitJetStream(deadline time.Time) error {
	srv := s.Inner()
	var last string
	for {
		h := srv.Healthz(nil)
		if h.Status == "ok" {
			return nil
		}
		last = h.Error
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: JetStream not healthy in time: %s", s.Name(), last)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Cluster is a JetStream cluster of in-process servers.
type Cluster struct {
	name  string
	nodes []*Server
}

// StartCluster starts an n-node JetStream cluster (n >= 2) and waits until
// it is ready as [Cluster.WaitReady] says: the nodes routed to each other,
// a meta leader elected that counts them all as online peers (so that an
// R3 stream can be placed at once), and every node healthy. Node i is named
// "N<i>"; the cluster is named after the test. If the first meta election
// fails, the cluster is started again, from empty stores (see below).
//
// As in nats-server's own tests, every node is configured with routes to
// all n nodes (itself included, which the server ignores), so that each
// expects a meta group of n peers from the start, as a production config
// does.
func StartCluster(t testing.TB, n int, opts ...Option) *Cluster {
	t.Helper()
	if n < 2 {
		// A node's expected meta group size is at least 2, so a single
		// clustered node never elects a leader: use StartServer.
		t.Fatalf("natstest: StartCluster needs at least 2 nodes, got %d", n)
	}
	c := &Cluster{name: clusterName(t)}
	var routes []string
	for i := range n {
		o := baseOptions(t)
		o.ServerName = "N" + strconv.Itoa(i)
		o.Port = allocPort(t)
		o.Cluster.Name = c.name
		o.Cluster.Host = "127.0.0.1"
		o.Cluster.Port = allocPort(t)
		routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", o.Cluster.Port))
		c.nodes = append(c.nodes, &Server{opts: o, c: c})
	}
	for _, s := range c.nodes {
		s.opts.Routes = server.RoutesFromStr(strings.Join(routes, ","))
		for _, f := range opts {
			f(s.opts)
		}
	}
	// Registered after baseOptions' t.TempDir calls, so that it runs before
	// the store directories are removed.
	t.Cleanup(c.shutdownAll)

	// The nodes start all at once. Started one after the other, the first
	// could call the first meta election before the last one is routed. At
	// bootstrap a candidate with an empty log needs the votes of all n
	// nodes, so a lost vote request, or two nodes whose campaign timers
	// (100 ms to 800 ms) fire within a few milliseconds of each other (a
	// split vote), costs a whole election timeout: 4 s to 9 s, in about 1
	// start of 5 under -race. nats-server's own tests avoid that by making
	// one node campaign at once, which its API does not allow from outside
	// the package; so a cluster without a meta leader 1.5 s after its start
	// is started again from empty stores (up to twice), which costs less.
	//
	// Clusters of parallel tests bootstrap one at a time: nine nodes
	// starting at once on two cores under -race made a failed first
	// election twice as likely.
	bootstrapMu.Lock()
	defer bootstrapMu.Unlock()
	deadline := time.Now().Add(readyTimeout)
	for attempt := 1; ; attempt++ {
		c.startAll(t)
		if attempt == 3 || c.waitMetaLeader(bootstrapElection) {
			break
		}
		t.Logf("natstest: cluster %s: no meta leader %v after its start (a split vote?); starting it again",
			c.name, bootstrapElection)
		c.shutdownAll()
		for _, s := range c.nodes {
			if err := os.RemoveAll(s.opts.StoreDir); err != nil {
				t.Fatalf("natstest: %v", err)
			}
			if err := os.Mkdir(s.opts.StoreDir, 0o700); err != nil {
				t.Fatalf("natstest: %v", err)
			}
		}
	}
	if err := c.waitReady(deadline); err != nil {
		t.Fatalf("natstest: cluster %s: %v", c.name, err)
	}
	return c
}

// bootstrapMu makes StartCluster's bootstraps take turns.
var bootstrapMu sync.Mutex

// bootstrapElection is how long StartCluster waits for the first meta
// leader before it starts the cluster again: the campaign timer's 800 ms at
// most, and time for the votes under -race on a busy machine.
const bootstrapElection = 1500 * time.Millisecond

// startAll starts every node, all at once.
func (c *Cluster) startAll(t testing.TB) {
	t.Helper()
	errs := make([]error, len(c.nodes))
	var wg sync.WaitGroup
	for i, s := range c.nodes {
		wg.Go(func() { errs[i] = s.start(readyTimeout) })
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("natstest: %v", err)
		}
	}
}

// waitMetaLeader reports whether a meta leader is elected within d.
func (c *Cluster) waitMetaLeader(d time.Duration) bool {
	c.waitFor(d, func() bool { return c.MetaLeader() >= 0 })
	return c.MetaLeader() >= 0
}

// waitRouted waits until the running nodes are all routed to each other.
func (c *Cluster) waitRouted(deadline time.Time) error {
	for {
		err := c.checkRouted(c.running())
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func clusterName(t testing.TB) string {
	name := strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-' {
			return r
		}
		return '_'
	}, t.Name())
	if len(name) > 32 {
		name = name[:32]
	}
	return name
}

func (c *Cluster) shutdownAll() {
	// Stop them all at once: one at a time, each node's leadership hand-off
	// goes to a node about to stop too.
	var wg sync.WaitGroup
	for _, s := range c.nodes {
		wg.Go(s.Shutdown)
	}
	wg.Wait()
}

// Len is the number of nodes.
func (c *Cluster) Len() int { return len(c.nodes) }

// Node returns node i (0 <= i < Len()).
func (c *Cluster) Node(i int) *Server { return c.nodes[i] }

// Name is the cluster's name (the Cluster.Name option of every node).
func (c *Cluster) Name() string { return c.name }

// URLs is every node's client URL, comma-separated, as nats.Connect takes
// them: nats://127.0.0.1:port,nats://127.0.0.1:port,...
func (c *Cluster) URLs() string {
	urls := make([]string, len(c.nodes))
	for i, s := range c.nodes {
		urls[i] = s.URL()
	}
	return strings.Join(urls, ",")
}

// running returns the running nodes.
func (c *Cluster) running() []*Server {
	var up []*Server
	for _, s := range c.nodes {
		if s.Running() {
			up = append(up, s)
		}
	}
	return up
}

// waitReady waits until the running nodes are all routed to each other and,
// if they make a quorum, until there is a meta leader that counts them all
// as online peers, each of them reports JetStream healthy, and every stream
// and consumer they host has a leader.
func (c *Cluster) waitReady(deadline time.Time) error {
	for {
		err := c.checkReady()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Cluster) checkReady() error {
	up := c.running()
	if err := c.checkRouted(up); err != nil {
		return err
	}
	if len(up) < len(c.nodes)/2+1 {
		return nil // no quorum: nothing else can become ready
	}
	ml := c.MetaLeader()
	if ml < 0 {
		return fmt.Errorf("no meta leader")
	}
	// The meta leader places new streams only on peers it has JetStream
	// stats from; until then creating an R3 stream fails with "no suitable
	// peers for placement".
	known := map[string]bool{}
	for _, name := range c.nodes[ml].Inner().JetStreamClusterPeers() {
		known[name] = true
	}
	for _, s := range up {
		if !known[s.Name()] {
			return fmt.Errorf("meta leader %s does not count %s as an online peer yet", c.nodes[ml].Name(), s.Name())
		}
	}
	for _, s := range up {
		if h := s.Inner().Healthz(nil); h.Status != "ok" {
			return fmt.Errorf("%s: JetStream not healthy: %s", s.Name(), h.Error)
		}
		if err := s.leaderless(); err != nil {
			return err
		}
	}
	return nil
}

// checkRouted returns an error unless the nodes up are all routed to each
// other.
func (c *Cluster) checkRouted(up []*Server) error {
	for _, s := range up {
		rz, err := s.Inner().Routez(nil)
		if err != nil {
			return fmt.Errorf("%s: routez: %w", s.Name(), err)
		}
		peers := map[string]bool{}
		for _, r := range rz.Routes {
			peers[r.RemoteID] = true
		}
		for _, o := range up {
			if o != s && !peers[o.Inner().ID()] {
				return fmt.Errorf("%s is not routed to %s yet", s.Name(), o.Name())
			}
		}
	}
	return nil
}

// leaderless returns an error naming a stream or consumer that the server
// hosts and that has no leader. Healthz alone does not wait for that: a
// stream whose leader is being elected counts as healthy.
func (s *Server) leaderless() error {
	jsz, err := s.Inner().Jsz(&server.JSzOptions{Accounts: true, Streams: true, Consumer: true})
	if err != nil {
		return fmt.Errorf("%s: jsz: %w", s.Name(), err)
	}
	for _, a := range jsz.AccountDetails {
		for _, st := range a.Streams {
			if st.Cluster != nil && st.Cluster.Leader == "" {
				return fmt.Errorf("stream %s > %s has no leader", a.Name, st.Name)
			}
			for _, ci := range st.Consumer {
				if ci.Cluster != nil && ci.Cluster.Leader == "" {
					return fmt.Errorf("consumer %s > %s > %s has no leader", a.Name, st.Name, ci.Name)
				}
			}
		}
	}
	return nil
}

// WaitReady waits until the running nodes are routed to each other and, if
// they make a quorum, until there is a meta leader that counts them all as
// online peers, every one of them reports JetStream healthy, and every
// stream and consumer they host has a leader.
func (c *Cluster) WaitReady(t testing.TB) {
	t.Helper()
	if err := c.waitReady(time.Now().Add(readyTimeout)); err != nil {
		t.Fatalf("natstest: cluster %s: %v", c.name, err)
	}
}

// MetaLeader is the index of the node that leads the JetStream meta group,
// or -1 if no running node does.
func (c *Cluster) MetaLeader() int {
	return c.find(func(s *server.Server) bool { return s.JetStreamIsLeader() })
}

// StreamLeader is the index of the node that leads the stream, in the
// global account, or -1 if no running node does (none elected yet, or no
// such stream).
func (c *Cluster) StreamLeader(stream string) int {
	return c.find(func(s *server.Server) bool { return s.JetStreamIsStreamLeader(GlobalAccount, stream) })
}

// ConsumerLeader is the index of the node that leads the stream's durable
// consumer, in the global account, or -1 if no running node does.
func (c *Cluster) ConsumerLeader(stream, consumer string) int {
	return c.find(func(s *server.Server) bool {
		return s.JetStreamIsConsumerLeader(GlobalAccount, stream, consumer)
	})
}

func (c *Cluster) find(leads func(*server.Server) bool) int {
	for i, s := range c.nodes {
		if !s.Running() {
			continue
		}
		if leads(s.Inner()) {
			return i
		}
	}
	return -1
}

// WaitStreamLeader waits until a running node leads the stream and returns
// its index.
func (c *Cluster) WaitStreamLeader(t testing.TB, stream string) int {
	t.Helper()
	return c.waitLeader(t, "stream "+stream, func() int { return c.StreamLeader(stream) })
}

// WaitConsumerLeader waits until a running node leads the consumer and
// returns its index.
func (c *Cluster) WaitConsumerLeader(t testing.TB, stream, consumer string) int {
	t.Helper()
	return c.waitLeader(t, "consumer "+stream+" > "+consumer, func() int { return c.ConsumerLeader(stream, consumer) })
}

// MoveStreamLeader makes node `to` the stream's leader and waits until it
// is. It asks the current leader to step down in favour of that node, as
// `nats stream cluster step-down --preferred` does, through the JetStream
// API ($JS.API.STREAM.LEADER.STEPDOWN). Tests use it to choose which node
// to stop.
func (c *Cluster) MoveStreamLeader(t testing.TB, stream string, to int) {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	c.WaitStreamLeader(t, stream)
	nc, err := nats.Connect(c.nodes[to].URL())
	if err != nil {
		t.Fatalf("natstest: move stream leader: %v", err)
	}
	defer nc.Close()
	req, _ := json.Marshal(server.JSApiLeaderStepdownRequest{
		Placement: &server.Placement{Preferred: c.nodes[to].Name()},
	})
	for {
		if c.StreamLeader(stream) == to {
			return
		}
		msg, err := nc.Request(fmt.Sprintf(server.JSApiStreamLeaderStepDownT, stream), req, 5*time.Second)
		if err == nil {
			var resp server.JSApiStreamLeaderStepDownResponse
			if err = json.Unmarshal(msg.Data, &resp); err == nil && resp.Error != nil {
				err = resp.Error
			}
		}
		// The leader hands over to the preferred node only if it deems it
		// healthy; otherwise another node leads, and we ask again. An
		// error such as "preferred server is already leader" can also
		// mean that the node is taking over right now.
		c.waitFor(time.Second, func() bool { return c.StreamLeader(stream) == to })
		if c.StreamLeader(stream) == to {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: stream %s: leader not moved to %s: %v", stream, c.nodes[to].Name(), err)
		}
	}
}

// waitFor polls cond every 10 ms for at most d.
func (c *Cluster) waitFor(d time.Duration, cond func() bool) {
	for end := time.Now().Add(d); !cond() && time.Now().Before(end); {
		time.Sleep(10 * time.Millisecond)
	}
}

func (c *Cluster) waitLeader(t testing.TB, what string, leader func() int) int {
	t.Helper()
	deadline := time.Now().Add(readyTimeout)
	for {
		if i := leader(); i >= 0 {
			return i
		}
		if time.Now().After(deadline) {
			t.Fatalf("natstest: no leader for %s within %v", what, readyTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// IgnoreGoroutines returns goleak options for the goroutines that nats-server
// v2.15.2 can leave behind after every server has been shut down. A server's
// own goroutines all end in Shutdown, and a closed nats.go connection's too,
// but one shutdown race leaks two goroutines:
//
// A node that processes a stream assignment (a new stream, or one it hosts
// again after a restart) while it shuts down creates the raft group's WAL
// file store in createRaftGroup (jetstream_cluster.go), then fails to start
// the raft node because the system account is already gone (initRaftNode in
// raft.go returns ErrNoSysAccount, logged at debug level as "Error creating
// raft group: system account not setup"), and never stops that store. Its
// (*fileStore).flushStreamStateLoop goroutine stays, and so does the
// process-wide access-time ticker of package server/ats (ats.Register.func1),
// which runs while any file store is registered.
//
// It takes a node shut down within milliseconds of a stream being created
// or recovered on it: a test that creates streams in a loop and shuts the
// cluster down at once leaked in 17 of 40 runs, and this package's
// TestShutdownLeavesNoGoroutines did now and then. The options ignore
// exactly those two goroutines, by the function at the top of their stacks.
func IgnoreGoroutines() []goleak.Option {
	return []goleak.Option{
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server.(*fileStore).flushStreamStateLoop"),
		goleak.IgnoreTopFunction("github.com/nats-io/nats-server/v2/server/ats.Register.func1"),
	}
}

// Ports are chosen here rather than by the kernel (Port -1), for the reason
// nats-server's own cluster tests give for theirs: a stopped node must get
// its ports back on Restart, and a port from the kernel's ephemeral range
// can meanwhile become the local port of any outgoing connection (a client
// reconnecting, say), which would make the restart fail. So allocPort picks
// a port below that range (or above it, if there is more room there) that
// is free on 127.0.0.1 when tried, and hands each port out once per process,
// so that a stopped node's port does not go to another test's server.
var ports = struct {
	sync.Mutex
	given map[int]bool
}{given: map[int]bool{}}

func allocPort(t testing.TB) int {
	t.Helper()
	lo, hi := portRange()
	ports.Lock()
	defer ports.Unlock()
	for range 1000 {
		p := lo + rand.IntN(hi-lo+1)
		if ports.given[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l.Close()
		ports.given[p] = true
		return p
	}
	t.Fatalf("natstest: no free port in %d-%d", lo, hi)
	return 0
}

// portRange is the range allocPort picks from: the larger of the ranges
// below and above the kernel's ephemeral ports, within 10000-65535.
func portRange() (lo, hi int) {
	elo, ehi := 32768, 60999 // Linux's default
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			a, err1 := strconv.Atoi(f[0])
			b, err2 := strconv.Atoi(f[1])
			if err1 == nil && err2 == nil && a <= b {
				elo, ehi = a, b
			}
		}
	}
	below, above := elo-1-10000, 65535-(ehi+1)
	if below >= above && below > 0 {
		return 10000, elo - 1
	}
	if above > 0 {
		return ehi + 1, 65535
	}
	return 10000, 65535 // the ephemeral range covers it all: no better choice
}

// stderrLogger is the log of a server when NATSTEST_LOG is set. Unlike
// nats-server's own logger its Fatalf does not exit the test binary.
type stderrLogger struct{ name string }

func (l stderrLogger) logf(level, format string, v ...any) {
	fmt.Fprintf(os.Stderr, "%s %s [%s] %s\n", time.Now().Format("15:04:05.000"), l.name, level, fmt.Sprintf(format, v...))
}

func (l stderrLogger) Noticef(format string, v ...any) { l.logf("INF", format, v...) }
func (l stderrLogger) Warnf(format string, v ...any)   { l.logf("WRN", format, v...) }
func (l stderrLogger) Fatalf(format string, v ...any)  { l.logf("FTL", format, v...) }
func (l stderrLogger) Errorf(format string, v ...any)  { l.logf("ERR", format, v...) }
func (l stderrLogger) Debugf(format string, v ...any)  { l.logf("DBG", format, v...) }
func (l stderrLogger) Tracef(format string, v ...any)  { l.logf("TRC", format, v...) }
