package main

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"eventsrv/admin"
	"eventsrv/auth"
	"eventsrv/broadcast"
	"eventsrv/cluster"
	"eventsrv/cluster/jsqueue"
	"eventsrv/history"
	"eventsrv/internal/cors"
	"eventsrv/internal/jsonhttp"
	"eventsrv/internal/logthrottle"
	"eventsrv/listen"
	"eventsrv/metrics"
	"eventsrv/queue"
)

// run is the whole program; main only hands it the process's context,
// arguments, environment and output, so tests can run it in-process.
// environ, when given, is the whole environment in os.Environ's form: run
// reads settings through getenv alone, and uses environ only to warn about
// variables that look like misspelt settings.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer, environ ...string) error {
	if done, err := runCommand(ctx, args, getenv, stdout, stderr); done {
		return err
	}
	cfg, err := loadConfig(getenv)
	if err != nil {
		return configError(err, environ)
	}
	log := newLogger(cfg, stderr)
	log.Info("starting eventsrv", cfg.logValue()...)
	warnConfig(log, cfg, environ)
	return serve(ctx, cfg, log)
}

func newLogger(cfg config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// serve runs both servers until ctx ends, then shuts down gracefully.
func serve(ctx context.Context, cfg config, log *slog.Logger) error {
	tlsConfig, err := loadTLS(cfg)
	if err != nil {
		return err
	}
	store, err := auth.OpenFileStore(cfg.TokensFile, log)
	if err != nil {
		return err
	}
	m := metrics.New()
	store.WithMetrics(m)
	authn := auth.NewAuthenticator(store, log).WithMetrics(m)
	if v, err := jwtVerifier(cfg); err != nil {
		return err
	} else if v != nil {
		authn.WithJWT(v)
	}
	origins, _ := cors.Parse(cfg.CORSAllowedOrigins) // validated with the configuration
	ports := &boundPorts{}
	// Work queues live in this process (in memory: lost at a restart), or
	// in cluster mode in a JetStream work-queue stream that every instance
	// shares (started once the bus has its connection, below).
	var queues queue.Broker
	var shared *jsqueue.Broker
	tuneGC(cfg.clustered(), log)
	if cfg.clustered() {
		shared = jsqueue.New(jsqueue.Options{Stream: cfg.NATSStream, Replicas: cfg.NATSReplicas,
			MaxTasks: cfg.QueueMaxTasks, MaxQueues: cfg.QueueMaxQueues, OfferTimeout: cfg.OfferTimeout,
			TaskTimeout: cfg.TaskTimeout, PublishTimeout: cfg.NATSPublishTimeout, Log: log})
		queues = shared
	} else {
		queues = queue.NewManager(queue.Options{MaxTasks: cfg.QueueMaxTasks, MaxQueues: cfg.QueueMaxQueues,
			OfferTimeout: cfg.OfferTimeout, TaskTimeout: cfg.TaskTimeout, Log: log})
	}
	defer queues.Close()
	m.WatchQueues(queues.Stats)
	var hist broadcast.History
	if cfg.HistorySize > 0 {
		mem := history.NewMemory(history.Limits{Size: cfg.HistorySize, TTL: cfg.HistoryTTL, MaxBytes: cfg.HistoryMaxBytes})
		m.WatchHistory(mem)
		hist = mem
	}
	hub := broadcast.NewHub(authn, broadcast.Options{
		QueueMaxBytes:    cfg.QueueMaxBytes,
		WriteTimeout:     cfg.WriteTimeout,
		IOURing:          cfg.IOURing,
		PingInterval:     cfg.PingInterval,
		InitTimeout:      cfg.InitTimeout,
		MaxMessageBytes:  cfg.MaxMessageBytes,
		MaxSubscriptions: cfg.MaxSubscriptions,
		Log:              log,
		Metrics:          m,
		CheckOrigin: func(r *http.Request) bool {
			return origins.Allowed(r.Header.Get("Origin")) || trustsConsole(cfg, r, int(ports.listen.Load()))
		},
		History:           hist,
		ResumeMaxEvents:   cfg.ResumeMaxEvents,
		ResumeMaxBytes:    cfg.ResumeMaxBytes,
		MaxEventNameBytes: cfg.MaxEventNameBytes,
		Elsewhere:         broadcastElsewhere(cfg),
		Fed:               cfg.clustered(),
		Queues:            queues,
		// A resume ahead of this instance's feed waits for it, within the
		// init's own time.
		ResumeWait: min(10*time.Second, cfg.InitTimeout/2),
	})
	m.WatchHub(hub)
	probes := &probes{}
	// One instance remembers Idempotency-Keys in memory; in cluster mode
	// JetStream does, for every instance.
	var publisher listen.Publisher = listen.NewDedup(hub, cfg.IdempotencyWindow, maxIdempotencyKeys)
	var bus *cluster.Bus
	if cfg.clustered() {
		bus, err = cluster.Open(cluster.Config{
			URLs: cfg.NATSURL, Embed: cfg.NATSEmbed, CredsFile: cfg.NATSCredsFile,
			CAFile: cfg.NATSTLSCAFile, CertFile: cfg.NATSTLSCertFile, KeyFile: cfg.NATSTLSKeyFile,
			Stream: cfg.NATSStream, Replicas: cfg.NATSReplicas,
			PublishTimeout: cfg.NATSPublishTimeout, DuplicateWindow: cfg.IdempotencyWindow,
			Limits: history.Limits{Size: cfg.HistorySize, TTL: cfg.HistoryTTL, MaxBytes: cfg.HistoryMaxBytes},
			Log:    log, Metrics: m,
		}, hub)
		if err != nil {
			_ = hub.Close(ctx)
			return err
		}
		defer bus.Close()
		m.WatchCluster(bus)
		if err := shared.Start(bus.Conn()); err != nil {
			_ = hub.Close(ctx)
			return fmt.Errorf("work queues on NATS: %w", err)
		}
		publisher = bus
		probes.ready = func() error {
			if err := bus.Ready(); err != nil {
				return err
			}
			return shared.Ready()
		}
	}
	listenOpts := listen.Options{MaxBodyBytes: cfg.MaxBodyBytes, MaxBatchBytes: cfg.MaxBatchBytes, MaxEventNameBytes: cfg.MaxEventNameBytes, Log: log, Metrics: m,
		TaskIdleTimeout: cfg.TaskIdleTimeout, Queues: queues}

	adminHandler := admin.NewHandler(authn, hub, admin.Info{Version: version(), Started: time.Now(), Log: log, Queues: queues.Stats})
	listenHandler := listen.NewHandler(authn, publisher, listenOpts)
	whoami := admin.NewWhoami(authn)
	consoleHandler := consoleRoutes(cfg, ports)
	// Browsers may POST from CORS_ALLOWED_ORIGINS; the admin endpoints are
	// for operators' tools, not pages, so they get no CORS headers.
	publishHandler := origins.Wrap(listenHandler, "POST")
	listenSrv := newServer(cfg, probes.wrap(about(listenAbout(cfg), notSubscribers(cfg,
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch {
			case strings.HasPrefix(r.URL.Path, "/admin/"):
				adminHandler.ServeHTTP(w, r)
			case r.URL.Path == "/whoami":
				whoami.ServeHTTP(w, r)
			case r.URL.Path == "/console" || strings.HasPrefix(r.URL.Path, "/console/"):
				consoleHandler.ServeHTTP(w, r)
			default:
				publishHandler.ServeHTTP(w, r)
			}
		})))), log)
	// READ_TIMEOUT bounds every request on the broadcast server too; the
	// hub clears it on the connections it takes over (WebSocket and SSE).
	broadcastSrv := newServer(cfg, probes.wrap(about(broadcastAbout(cfg), origins.Wrap(hub, "GET"))), log)
	if origins == nil {
		quiet := logthrottle.New(10, time.Second)
		listenSrv.Handler = corsHint(log, quiet, listenSrv.Handler)
		broadcastSrv.Handler = corsHint(log, quiet, broadcastSrv.Handler)
	}

	var servers []*endpoint
	closeAll := func() {
		for _, s := range servers {
			s.ln.Close()
		}
		_ = hub.Close(ctx)
	}
	for _, s := range []struct {
		name, setting string
		srv           *http.Server
		port          int
	}{
		{"listen", "LISTEN_PORT", listenSrv, cfg.ListenPort},
		{"broadcast", "BROADCAST_PORT", broadcastSrv, cfg.BroadcastPort},
	} {
		ln, err := net.Listen("tcp", cfg.addr(s.port))
		if err != nil {
			closeAll()
			return fmt.Errorf("%s server (%s): %w", s.name, s.setting, err)
		}
		port := int32(ln.Addr().(*net.TCPAddr).Port)
		if s.name == "listen" {
			ports.listen.Store(port)
		} else {
			ports.broadcast.Store(port)
		}
		if tlsConfig != nil {
			ln = tls.NewListener(ln, tlsConfig)
		}
		servers = append(servers, &endpoint{name: s.name, srv: s.srv, ln: ln, publishes: s.name == "listen"})
	}
	if cfg.ListenSocket != "" {
		// Local processes publish over the socket without a token: the
		// socket file's mode is the access control.
		ln, err := listenUnix(cfg.ListenSocket, cfg.socketMode())
		if err != nil {
			closeAll()
			return fmt.Errorf("local socket (LISTEN_SOCKET): %w", err)
		}
		srv := newServer(cfg, probes.wrap(listen.NewHandler(localPeer{}, publisher, listenOpts)), log)
		servers = append(servers, &endpoint{name: "socket", srv: srv, ln: ln, publishes: true})
	}

	if cfg.MetricsAddress != "off" {
		ln, err := net.Listen("tcp", cfg.MetricsAddress)
		if err != nil {
			closeAll()
			return fmt.Errorf("metrics server (METRICS_ADDRESS): %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", m.Handler())
		servers = append(servers, &endpoint{name: "metrics", srv: newServer(cfg, probes.wrap(mux), log), ln: ln})
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	// A token removed or narrowed in the file applies to open connections
	// too, not only to new ones (see Hub.Recheck).
	store.OnChange(func() { hub.Recheck(authn.Recheck) })
	go store.Watch(watchCtx, cfg.TokensReloadInterval)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	errc := make(chan error, len(servers))
	for _, s := range servers {
		scheme := "http"
		if tlsConfig != nil && (s.name == "listen" || s.name == "broadcast") {
			scheme = "https"
		}
		log.Info("serving", "server", s.name, "addr", s.ln.Addr().String(), "scheme", scheme)
		go func() {
			if err := s.srv.Serve(s.ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", s.name, err)
			}
		}()
	}

	var serveErr error
wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case serveErr = <-errc:
			break wait
		case <-hup:
			if err := store.Reload(); err != nil {
				log.Error("tokens file reload on SIGHUP failed; keeping the previous tokens", "err", err)
			}
		}
	}
	stopWatch()
	shutdown(cfg, log, probes, servers, hub, bus, shared)
	return serveErr
}

// maxIdempotencyKeys bounds the keys one instance remembers: about 100
// bytes each, 10 MB in all; past it the oldest are forgotten early.
const maxIdempotencyKeys = 100_000

// jwtVerifier returns the Bearer token verifier the settings ask for, or
// nil when Bearer tokens are not enabled.
func jwtVerifier(cfg config) (*auth.JWTVerifier, error) {
	opts := []auth.VerifierOption{auth.WithAudience(cfg.JWTAudience), auth.WithIssuer(cfg.JWTIssuer)}
	switch {
	case cfg.JWTSecret != "":
		return auth.NewHMACVerifier([]byte(cfg.JWTSecret), opts...)
	case cfg.JWTPublicKeyFile != "":
		pemData, err := os.ReadFile(cfg.JWTPublicKeyFile)
		if err != nil {
			return nil, fmt.Errorf("JWT_PUBLIC_KEY_FILE: %w", err)
		}
		v, err := auth.NewPublicKeyVerifier(pemData, opts...)
		if err != nil {
			return nil, fmt.Errorf("JWT_PUBLIC_KEY_FILE %s: %w", cfg.JWTPublicKeyFile, err)
		}
		return v, nil
	}
	return nil, nil
}

// endpoint is one of the HTTP servers with its listener.
type endpoint struct {
	name      string
	srv       *http.Server
	ln        net.Listener
	publishes bool // takes POST /event, so it drains before the hub closes
}

// localPeer authenticates every request: it serves the local socket,
// whose file mode decides who may connect.
type localPeer struct{}

func (localPeer) Authenticate(string, string, string) (auth.Permissions, error) {
	return auth.FullAccess, nil
}

// shutdown turns /readyz to 503, waits SHUTDOWN_DELAY so that load
// balancers notice, stops accepting, lets in-flight POSTs finish (their
// events still reach the subscribers: in cluster mode once the stream's
// feed has brought them), then sends every subscriber close 1001; all but
// the delay within SHUTDOWN_TIMEOUT. In cluster mode the work queues give
// their tasks back before the NATS connection closes.
func shutdown(cfg config, log *slog.Logger, probes *probes, servers []*endpoint, hub *broadcast.Hub, bus *cluster.Bus, shared *jsqueue.Broker) {
	probes.draining.Store(true)
	log.Info("shutting down", "delay", cfg.ShutdownDelay.String(), "timeout", cfg.ShutdownTimeout.String(),
		"subscribers", hub.Subscribers())
	time.Sleep(cfg.ShutdownDelay)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	publishers, others := make(chan error, len(servers)), make(chan error, len(servers))
	for _, s := range servers {
		done := others
		if s.publishes {
			done = publishers
		}
		go func() { done <- s.srv.Shutdown(ctx) }()
	}
	var errs []error
	for _, s := range servers {
		if s.publishes {
			errs = append(errs, <-publishers)
		}
	}
	if bus != nil {
		// In cluster mode what this instance answered OK reaches its own
		// subscribers through the stream: wait for the feed to bring it,
		// then stop the feed, so that the hub closes on a fixed set.
		// Later events reach the subscribers where they resume.
		errs = append(errs, bus.Drain(ctx))
		// The tasks this instance's workers hold go back to JetStream for
		// the other instances' workers, before the connection closes.
		shared.Close()
		bus.Close()
	}
	errs = append(errs, hub.Close(ctx))
	for _, s := range servers {
		if !s.publishes {
			errs = append(errs, <-others)
		}
	}
	if err := errors.Join(errs...); err != nil {
		// Past the timeout the rest is cut; that is the operator's setting
		// working as documented, not a failure to exit with.
		for _, s := range servers {
			s.srv.Close()
		}
		log.Warn("shutdown timeout passed; remaining connections were cut", "err", err)
		return
	}
	log.Info("shutdown complete")
}

func newServer(cfg config, h http.Handler, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           closeUnread(h),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// probes answers GET /healthz and /readyz on every server, ahead of its own
// routes (on the broadcast server a WebSocket upgrade at those paths still
// upgrades). /healthz is 200 while the process serves; /readyz turns 503
// as soon as shutdown begins, before any connection is closed, and while
// ready (when set) says what is wrong: in cluster mode, until the instance
// is connected to NATS and follows its stream.
type probes struct {
	draining atomic.Bool
	ready    func() error
}

// notReady is why the instance is not ready, or nil.
func (p *probes) notReady() error {
	if p.ready == nil {
		return nil
	}
	return p.ready()
}

func (p *probes) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if (r.URL.Path != "/healthz" && r.URL.Path != "/readyz") || websocket.IsWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		var notReady error
		if r.URL.Path == "/readyz" {
			notReady = p.notReady()
		}
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			w.Header().Set("Allow", "GET, HEAD")
			jsonhttp.Error(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", r.URL.Path+" answers GET")
		case r.URL.Path == "/readyz" && p.draining.Load():
			jsonhttp.Write(w, http.StatusServiceUnavailable, []byte(`{"status":"shutting down"}`))
		case notReady != nil:
			jsonhttp.Write(w, http.StatusServiceUnavailable, []byte(`{"status":"not ready","reason":`+jsonhttp.Quote(notReady.Error())+`}`))
		default:
			jsonhttp.Write(w, http.StatusOK, []byte(`{"status":"ok"}`))
		}
	})
}

// listenUnix listens on a UNIX socket at path with the given file mode. A
// socket left behind by a process that did not stop cleanly is replaced;
// anything else at path, or a socket someone serves on, is an error.
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if info, err := os.Lstat(path); err == nil {
		if info.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("%s exists and is not a socket", path)
		}
		if c, err := net.Dial("unix", path); err == nil {
			c.Close()
			return nil, fmt.Errorf("another process serves on %s", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale socket: %w", err)
		}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, err
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("set the socket's mode: %w", err)
	}
	return ln, nil
}

// loadTLS returns nil when HTTPS is off. A missing or bad file stops the
// start with an error naming the file.
func loadTLS(cfg config) (*tls.Config, error) {
	if !cfg.HTTPSEnable {
		return nil, nil
	}
	certPEM, err := os.ReadFile(cfg.TLSCertFile)
	if err != nil {
		return nil, fmt.Errorf("HTTPS_ENABLE is true but TLS_CERT_FILE cannot be read: %w", err)
	}
	keyPEM, err := os.ReadFile(cfg.TLSKeyFile)
	if err != nil {
		return nil, fmt.Errorf("HTTPS_ENABLE is true but TLS_KEY_FILE cannot be read: %w", err)
	}
	if b, _ := pem.Decode(certPEM); b == nil {
		return nil, fmt.Errorf("TLS_CERT_FILE %s holds no PEM data", cfg.TLSCertFile)
	}
	if b, _ := pem.Decode(keyPEM); b == nil {
		return nil, fmt.Errorf("TLS_KEY_FILE %s holds no PEM data", cfg.TLSKeyFile)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("TLS_CERT_FILE %s and TLS_KEY_FILE %s: %w", cfg.TLSCertFile, cfg.TLSKeyFile, err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{pair},
		// HTTP/1.1 only: WebSocket upgrades need it, and the listen API
		// gains nothing from HTTP/2.
		NextProtos: []string{"http/1.1"},
	}, nil
}
