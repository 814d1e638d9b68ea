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
	"syscall"
	"time"

	"github.com/gorilla/websocket"

	"eventsrv/auth"
	"eventsrv/broadcast"
	"eventsrv/listen"
)

const usage = `usage: eventsrv [command]

With no command, eventsrv serves: the listen server (POST /event) and the
broadcast server (WebSocket subscribers). Settings are environment
variables; see README.md.

Commands:
  token        print a new random token to add to the tokens file
  healthcheck  GET /healthz on the local listen server; exit 0 when healthy
  help         print this text
`

// run is the whole program; main only hands it the process's context,
// arguments, environment and output, so tests can run it in-process.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	cmd := ""
	if len(args) > 1 {
		cmd = args[1]
	}
	switch cmd {
	case "":
	case "token":
		_, err := fmt.Fprintln(stdout, auth.NewToken())
		return err
	case "healthcheck":
		return healthcheck(ctx, getenv)
	case "help", "-h", "-help", "--help":
		_, err := io.WriteString(stdout, usage)
		return err
	default:
		return fmt.Errorf("unknown command %q\n%s", cmd, usage)
	}

	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	log := newLogger(cfg, stderr)
	log.Info("starting eventsrv", cfg.logValue()...)
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
	authn := auth.NewAuthenticator(store, log)
	hub := broadcast.NewHub(authn, broadcast.Options{
		QueueMaxBytes:    cfg.QueueMaxBytes,
		WriteTimeout:     cfg.WriteTimeout,
		PingInterval:     cfg.PingInterval,
		InitTimeout:      cfg.InitTimeout,
		MaxMessageBytes:  cfg.MaxMessageBytes,
		MaxSubscriptions: cfg.MaxSubscriptions,
		Log:              log,
	})
	listenHandler := listen.NewHandler(authn, hub, listen.Options{MaxBodyBytes: cfg.MaxBodyBytes, Log: log})

	listenSrv := newServer(cfg, withHealth(listenHandler), tlsConfig, log)
	// The broadcast server has no ReadTimeout: upgraded connections set
	// their own deadlines, and a timeout here would cut the upgrade.
	broadcastSrv := newServer(cfg, withHealth(hub), tlsConfig, log)
	broadcastSrv.ReadTimeout = 0

	listenLn, err := net.Listen("tcp", cfg.addr(cfg.ListenPort))
	if err != nil {
		_ = hub.Close(ctx)
		return fmt.Errorf("listen server (LISTEN_PORT): %w", err)
	}
	broadcastLn, err := net.Listen("tcp", cfg.addr(cfg.BroadcastPort))
	if err != nil {
		listenLn.Close()
		_ = hub.Close(ctx)
		return fmt.Errorf("broadcast server (BROADCAST_PORT): %w", err)
	}

	watchCtx, stopWatch := context.WithCancel(context.Background())
	defer stopWatch()
	go store.Watch(watchCtx, cfg.TokensReloadInterval)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	errc := make(chan error, 2)
	start := func(name string, srv *http.Server, ln net.Listener) {
		scheme := "http"
		if tlsConfig != nil {
			scheme = "https"
			ln = tls.NewListener(ln, tlsConfig)
		}
		log.Info("serving", "server", name, "addr", ln.Addr().String(), "scheme", scheme)
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("%s server: %w", name, err)
			}
		}()
	}
	start("listen", listenSrv, listenLn)
	start("broadcast", broadcastSrv, broadcastLn)

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
	shutdown(cfg, log, listenSrv, broadcastSrv, hub)
	return serveErr
}

// shutdown stops accepting on both servers and lets in-flight POSTs finish
// (their events still reach the subscribers), then sends every subscriber
// close 1001; all of it within SHUTDOWN_TIMEOUT.
func shutdown(cfg config, log *slog.Logger, listenSrv, broadcastSrv *http.Server, hub *broadcast.Hub) {
	log.Info("shutting down", "timeout", cfg.ShutdownTimeout.String(), "subscribers", hub.Subscribers())
	ctx, cancel := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancel()
	upgrades := make(chan error, 1)
	go func() { upgrades <- broadcastSrv.Shutdown(ctx) }()
	err := errors.Join(listenSrv.Shutdown(ctx), hub.Close(ctx), <-upgrades)
	if err != nil {
		// Past the timeout the rest is cut; that is the operator's setting
		// working as documented, not a failure to exit with.
		listenSrv.Close()
		broadcastSrv.Close()
		log.Warn("shutdown timeout passed; remaining connections were cut", "err", err)
		return
	}
	log.Info("shutdown complete")
}

func newServer(cfg config, h http.Handler, tlsConfig *tls.Config, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		ReadTimeout:       cfg.ReadTimeout,
		WriteTimeout:      cfg.ReadTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
}

// withHealth answers GET /healthz on either server, ahead of its own routes
// (on the broadcast server a WebSocket upgrade at /healthz still upgrades).
func withHealth(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" || websocket.IsWebSocketUpgrade(r) {
			next.ServeHTTP(w, r)
			return
		}
		body := `{"status":"ok"}`
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			body = `{"code":"METHOD_NOT_ALLOWED"}`
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusMethodNotAllowed)
		} else {
			w.Header().Set("Content-Type", "application/json")
		}
		_, _ = io.WriteString(w, body)
	})
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

// healthcheck probes the local listen server, for container health checks
// (the runtime image has no shell or curl).
func healthcheck(ctx context.Context, getenv func(string) string) error {
	cfg, err := loadConfig(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	host := cfg.BindAddress
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	scheme := "http"
	client := &http.Client{Timeout: 3 * time.Second}
	if cfg.HTTPSEnable {
		scheme = "https"
		// The probe checks liveness on loopback, not the certificate.
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}} //nolint:gosec
	}
	url := scheme + "://" + net.JoinHostPort(host, fmt.Sprint(cfg.ListenPort)) + "/healthz"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("healthcheck: %s answered %s", url, resp.Status)
	}
	return nil
}
