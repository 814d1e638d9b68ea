package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Client publishes to an eventsrv listen server and subscribes on its
// broadcast server. It is safe for concurrent use; make one per server and
// share it: its HTTP connections are kept alive and reused.
type Client struct {
	eventURL     string // the listen server's POST /event
	broadcastURL string // ws:// or wss://
	creds        *credentials
	tls          *tls.Config
	transport    *http.Transport
	http         *http.Client
	publish      publishPolicy
	userAgent    string
}

// publishPolicy is how Publish retries.
type publishPolicy struct {
	maxAttempts int // 0: until the context ends
	backoff     backoff
	timeout     time.Duration // per attempt
}

// Defaults. Publishing retries quickly (a server restart takes a second
// or two); subscribers reconnect more slowly and spread out more, since
// many of them lose one server together.
const (
	DefaultMaxAttempts      = 10
	defaultPublishBase      = 100 * time.Millisecond
	defaultPublishMax       = 10 * time.Second
	defaultPublishTimeout   = 10 * time.Second
	defaultReconnectBase    = time.Second
	defaultReconnectMax     = 30 * time.Second
	defaultIdleTimeout      = 75 * time.Second // three of the server's default 25 s pings
	defaultBuffer           = 1024
	handshakeTimeout        = 10 * time.Second
	writeTimeout            = 10 * time.Second
	maxAnswerBytes          = 64 << 10
	maxFrameBytes           = 64 << 20 // well above the server's largest event (MAX_BODY_BYTES)
	maxIdleConnsPerHost     = 64
	defaultUserAgentVersion = "eventsrv-go-client/1"
)

// Option configures a Client.
type Option func(*Client)

// WithToken authenticates with a token from the server's tokens file
// (sent as "Basic <token>").
func WithToken(token string) Option {
	return func(c *Client) { c.creds = &credentials{scheme: "Basic", token: token} }
}

// WithJWT authenticates with a JWT ("Bearer <jwt>"). refresh, when not
// nil, returns a new JWT: the client calls it before the current one
// expires (it reads the token's exp claim, without verifying it, and asks
// when a quarter of the token's lifetime is left, at most a minute before
// exp). A Subscription then sends the new token on its live connection, so
// the server never closes it with 4001. jwt may be empty when refresh is
// given: refresh is then called for the first one. refresh must return
// when its context ends (Close waits for it).
func WithJWT(jwt string, refresh func(ctx context.Context) (string, error)) Option {
	return func(c *Client) {
		c.creds = &credentials{scheme: "Bearer", refresh: refresh}
		if jwt != "" {
			c.creds.set(jwt, time.Now())
		}
	}
}

// WithBroadcastURL sets the broadcast server's URL (ws://, wss://, or
// http:// and https://, which mean the same). Without it, the client
// derives it from the listen URL: the same host, port 8081 when the listen
// URL has port 8080 or none, the next port otherwise (the compose files'
// 11000/11001 and 12000/12001), ws or wss as the listen URL is http or
// https.
func WithBroadcastURL(u string) Option {
	return func(c *Client) { c.broadcastURL = u }
}

// WithTLSConfig sets the TLS configuration of both servers' connections:
// a CA pool for a private certificate, a client certificate.
func WithTLSConfig(cfg *tls.Config) Option {
	return func(c *Client) { c.tls = cfg }
}

// WithPublishRetry sets how Publish retries a 503 or a network error:
// at most maxAttempts attempts in all (0: until the context ends; the
// default is DefaultMaxAttempts), waiting a random time in [0,
// min(max, base·2ⁿ)) before retry n (defaults 100 ms and 10 s), after
// any Retry-After the server asked for.
func WithPublishRetry(maxAttempts int, base, max time.Duration) Option {
	return func(c *Client) {
		c.publish.maxAttempts = maxAttempts
		c.publish.backoff = backoff{base, max}
	}
}

// WithPublishTimeout bounds one publish attempt (default 10 s); a
// timed-out attempt is retried like a network error.
func WithPublishTimeout(d time.Duration) Option {
	return func(c *Client) { c.publish.timeout = d }
}

// WithUserAgent sets the User-Agent the server's /admin/clients shows.
func WithUserAgent(ua string) Option {
	return func(c *Client) { c.userAgent = ua }
}

// New returns a client of the listen server at listenURL
// ("http://localhost:8080"; a URL without scheme is taken as http).
func New(listenURL string, opts ...Option) (*Client, error) {
	listen, err := parseListenURL(listenURL)
	if err != nil {
		return nil, fmt.Errorf("eventsrv: %w", err)
	}
	c := &Client{
		creds:     &credentials{},
		userAgent: defaultUserAgentVersion,
		publish: publishPolicy{
			maxAttempts: DefaultMaxAttempts,
			backoff:     backoff{defaultPublishBase, defaultPublishMax},
			timeout:     defaultPublishTimeout,
		},
	}
	for _, o := range opts {
		o(c)
	}
	if c.broadcastURL == "" {
		c.broadcastURL = deriveBroadcastURL(listen)
	} else if c.broadcastURL, err = parseBroadcastURL(c.broadcastURL); err != nil {
		return nil, fmt.Errorf("eventsrv: %w", err)
	}
	c.eventURL = listen.JoinPath("event").String()
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = maxIdleConnsPerHost
	if c.tls != nil {
		tr.TLSClientConfig = c.tls.Clone()
	}
	c.transport = tr
	c.http = &http.Client{Transport: tr}
	return c, nil
}

// Close releases the client's idle connections. Subscriptions have their
// own connections and end with their context or Close.
func (c *Client) Close() error {
	c.transport.CloseIdleConnections()
	return nil
}

// BroadcastURL is the broadcast server's URL the client subscribes at.
func (c *Client) BroadcastURL() string { return c.broadcastURL }

// parseListenURL checks the listen server's URL.
func parseListenURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("no listen server URL (e.g. http://localhost:8080)")
	}
	if !strings.Contains(s, "://") {
		s = "http://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("the listen server URL: %w", err)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return nil, fmt.Errorf("the listen server URL %q: the scheme must be http or https", s)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("the listen server URL %q has no host", s)
	}
	u.RawQuery, u.Fragment = "", ""
	return u, nil
}

// parseBroadcastURL checks the broadcast server's URL; http and https are
// written ws and wss.
func parseBroadcastURL(s string) (string, error) {
	if !strings.Contains(s, "://") {
		s = "ws://" + s
	}
	u, err := url.Parse(s)
	if err != nil {
		return "", fmt.Errorf("the broadcast server URL: %w", err)
	}
	switch u.Scheme {
	case "ws", "wss":
	case "http":
		u.Scheme = "ws"
	case "https":
		u.Scheme = "wss"
	default:
		return "", fmt.Errorf("the broadcast server URL %q: the scheme must be ws or wss", s)
	}
	if u.Host == "" {
		return "", fmt.Errorf("the broadcast server URL %q has no host", s)
	}
	if u.Path == "" {
		u.Path = "/"
	}
	return u.String(), nil
}

// deriveBroadcastURL is the broadcast server's URL by the deployments'
// convention: the same host, the listen port plus one (8081 beside 8080,
// and when the listen URL has no port), ws or wss, the same path.
func deriveBroadcastURL(listen *url.URL) string {
	u := *listen
	u.Scheme = "ws"
	if listen.Scheme == "https" {
		u.Scheme = "wss"
	}
	port := "8081"
	if p, err := strconv.Atoi(listen.Port()); err == nil && p != 8080 && p < 65535 {
		port = strconv.Itoa(p + 1)
	}
	u.Host = net.JoinHostPort(listen.Hostname(), port)
	u.Path = strings.TrimSuffix(u.Path, "/") + "/"
	u.RawPath = ""
	return u.String()
}
