package cluster

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// embedded is a JetStream server run inside the process for NATS_EMBED:
// one instance whose history and IDs survive restarts, with no service to
// install. It listens on no port; the bus connects to it in-process.
type embedded struct {
	srv *server.Server
}

func startEmbedded(dir string, log *slog.Logger) (*embedded, error) {
	srv, err := server.NewServer(&server.Options{
		ServerName: "eventsrv-embedded",
		JetStream:  true,
		StoreDir:   dir,
		DontListen: true,
		NoSigs:     true,
	})
	if err != nil {
		return nil, fmt.Errorf("NATS_EMBED: %w", err)
	}
	srv.SetLoggerV2(serverLog{log.With("component", "nats-server")}, false, false, false)
	srv.Start()
	if !srv.ReadyForConnections(30 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("NATS_EMBED: the embedded NATS server in %s did not start within 30s", dir)
	}
	return &embedded{srv: srv}, nil
}

func (e *embedded) shutdown() {
	if e == nil {
		return
	}
	e.srv.Shutdown()
	e.srv.WaitForShutdown()
}

// serverLog passes the embedded server's warnings and errors to the log;
// its notices are debug lines.
type serverLog struct{ log *slog.Logger }

func (l serverLog) Noticef(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l serverLog) Warnf(format string, v ...any)   { l.log.Warn(fmt.Sprintf(format, v...)) }
func (l serverLog) Fatalf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLog) Errorf(format string, v ...any)  { l.log.Error(fmt.Sprintf(format, v...)) }
func (l serverLog) Debugf(format string, v ...any)  {}
func (l serverLog) Tracef(format string, v ...any)  {}
