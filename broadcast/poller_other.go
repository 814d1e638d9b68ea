//go:build !linux

package broadcast

import (
	"errors"
	"log/slog"
)

// poller is Linux-only; elsewhere every connection has a reader goroutine.
type poller struct{}

func newPoller(*slog.Logger) (*poller, error) { return nil, errors.New("no poller on this system") }

func (p *poller) add(*client) error   { return errors.New("no poller") }
func (p *poller) rearm(*client) error { return errors.New("no poller") }
func (p *poller) remove(*client)      {}
func (p *poller) close()              {}
