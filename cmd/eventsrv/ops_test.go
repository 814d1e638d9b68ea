package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const otherToken = "another-token-abcdefghijklmnop"

func TestTokensFileIsReloadedWhenItChanges(t *testing.T) {
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "20ms"})
	status, _ := s.post("Basic "+otherToken, `{"event":"a"}`)
	require.Equal(t, 403, status)

	require.NoError(t, os.WriteFile(s.tokensFile, []byte(otherToken+"\n"), 0o600))
	require.Eventually(t, func() bool {
		status, _ := s.post("Basic "+otherToken, `{"event":"a","data":0}`)
		return status == 200
	}, 10*time.Second, 10*time.Millisecond)
	status, _ = s.post("Basic "+testToken, `{"event":"a"}`)
	assert.Equal(t, 403, status, "the removed token is still accepted")

	// An unreadable file keeps the last good set, and open connections.
	c := s.dial()
	require.Equal(t, `{"type":"init","code":"OK"}`, sendInit(t, c, initMsg("Basic "+otherToken, "a")))
	require.NoError(t, os.Remove(s.tokensFile))
	s.waitLog("tokens file reload failed")
	status, _ = s.post("Basic "+otherToken, `{"event":"a","data":2}`)
	assert.Equal(t, 200, status)
	require.Equal(t, eventJSON("a", "2"), readEvent(t, c))
}

func TestTokensFileIsReloadedOnSIGHUP(t *testing.T) {
	s := startServer(t, map[string]string{"TOKENS_RELOAD_INTERVAL": "1h"})
	require.NoError(t, os.WriteFile(s.tokensFile, []byte("# rotated\n\n  "+otherToken+"\r\nshort\n"), 0o600))
	require.NoError(t, syscall.Kill(os.Getpid(), syscall.SIGHUP))
	s.waitLog(`msg="tokens file reloaded"`)
	status, _ := s.post("Basic "+otherToken, `{"event":"a"}`)
	assert.Equal(t, 200, status)
	assert.Contains(t, s.logs.String(), "line=4", "the short token's line is named")
	assert.NotContains(t, s.logs.String(), "short\n")
}

func TestMissingTokensFileIsCreated(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "sub", "tokens")
	var logs bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve and stop at once: only the start-up matters here
	err := run(ctx, []string{"eventsrv"}, mapEnv(map[string]string{
		"TOKENS_FILE": path, "LISTEN_PORT": "0", "BROADCAST_PORT": "0", "BIND_ADDRESS": "127.0.0.1",
		"METRICS_ADDRESS": "off",
	}), io.Discard, &logs)
	require.NoError(t, err)
	info, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())
	content, err := os.ReadFile(path)
	require.NoError(t, err)
	var tokens []string
	for _, l := range strings.Split(string(content), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			tokens = append(tokens, l)
		}
	}
	require.Len(t, tokens, 1)
	assert.GreaterOrEqual(t, len(tokens[0]), 32)
	assert.Contains(t, logs.String(), path)
	assert.NotContains(t, logs.String(), tokens[0])
}

func TestTokenCommand(t *testing.T) {
	var out1, out2 bytes.Buffer
	require.NoError(t, run(context.Background(), []string{"eventsrv", "token"}, mapEnv(nil), &out1, io.Discard))
	require.NoError(t, run(context.Background(), []string{"eventsrv", "token"}, mapEnv(nil), &out2, io.Discard))
	tok := strings.TrimSpace(out1.String())
	assert.GreaterOrEqual(t, len(tok), 32)
	assert.NotEqual(t, tok, strings.TrimSpace(out2.String()))
	err := run(context.Background(), []string{"eventsrv", "nonsense"}, mapEnv(nil), io.Discard, io.Discard)
	assert.ErrorContains(t, err, `unknown command "nonsense"`)
}

func TestHealthcheckCommand(t *testing.T) {
	s := startServer(t, nil)
	_, port, err := net.SplitHostPort(strings.TrimPrefix(s.listenURL, "http://"))
	require.NoError(t, err)
	env := mapEnv(map[string]string{"LISTEN_PORT": port})
	require.NoError(t, run(context.Background(), []string{"eventsrv", "healthcheck"}, env, io.Discard, io.Discard))
	require.NoError(t, s.stop())
	assert.Error(t, run(context.Background(), []string{"eventsrv", "healthcheck"}, env, io.Discard, io.Discard))
}

func TestInvalidConfigurationNamesTheVariable(t *testing.T) {
	cases := map[string]map[string]string{
		"LISTEN_PORT":      {"LISTEN_PORT": "eighty"},
		"BROADCAST_PORT":   {"BROADCAST_PORT": "70000"},
		"HTTPS_ENABLE":     {"HTTPS_ENABLE": "maybe"},
		"PING_INTERVAL":    {"PING_INTERVAL": "often"},
		"SHUTDOWN_TIMEOUT": {"SHUTDOWN_TIMEOUT": "-1s"},
		"MAX_BODY_BYTES":   {"MAX_BODY_BYTES": "0"},
		"QUEUE_MAX_BYTES":  {"QUEUE_MAX_BYTES": "1000"},
		"LOG_FORMAT":       {"LOG_FORMAT": "xml"},
		"LOG_LEVEL":        {"LOG_LEVEL": "loud"},
	}
	for name, env := range cases {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), []string{"eventsrv"}, mapEnv(env), io.Discard, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
		})
	}
}

func TestHTTPS(t *testing.T) {
	certFile, keyFile := writeSelfSigned(t)
	s := startServer(t, map[string]string{"HTTPS_ENABLE": "true", "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile})
	require.True(t, strings.HasPrefix(s.wsURL, "wss://"))
	c := s.subscribe("secure")
	s.publish("secure", `{"ok":true}`)
	require.Equal(t, eventJSON("secure", `{"ok":true}`), readEvent(t, c))

	// TLS 1.1 and older are refused on both ports.
	for _, u := range []string{s.listenURL, "https://" + strings.TrimSuffix(strings.TrimPrefix(s.wsURL, "wss://"), "/")} {
		old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{
			InsecureSkipVerify: true, MaxVersion: tls.VersionTLS11}}}
		_, err := old.Get(u + "/healthz")
		assert.Error(t, err, u)
		old.CloseIdleConnections()
	}
}

func TestHTTPSWithBadFilesDoesNotStart(t *testing.T) {
	certFile, keyFile := writeSelfSigned(t)
	garbage := filepath.Join(t.TempDir(), "garbage.crt")
	require.NoError(t, os.WriteFile(garbage, []byte("not a certificate"), 0o600))
	// Each case: cert file, key file; the error must name the bad one.
	cases := map[string][2]string{
		"missing.crt": {filepath.Join(t.TempDir(), "missing.crt"), keyFile},
		"missing.key": {certFile, filepath.Join(t.TempDir(), "missing.key")},
		"garbage.crt": {garbage, keyFile},
		"cert.crt":    {certFile, certFile}, // a certificate where the key should be
	}
	for name, files := range cases {
		t.Run(name, func(t *testing.T) {
			err := run(context.Background(), []string{"eventsrv"}, mapEnv(map[string]string{
				"HTTPS_ENABLE": "true", "TLS_CERT_FILE": files[0], "TLS_KEY_FILE": files[1],
				"TOKENS_FILE": filepath.Join(t.TempDir(), "tokens"),
			}), io.Discard, io.Discard)
			require.Error(t, err)
			assert.Contains(t, err.Error(), name)
		})
	}
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// writeSelfSigned makes a certificate for 127.0.0.1 and returns its files.
func writeSelfSigned(t *testing.T) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.crt"), filepath.Join(dir, "cert.key")
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func TestReadyzTurnsOffBeforeConnectionsClose(t *testing.T) {
	s := startServer(t, map[string]string{"SHUTDOWN_DELAY": "300ms"})
	broadcastHTTP := "http://" + strings.TrimSuffix(strings.TrimPrefix(s.wsURL, "ws://"), "/")
	for _, base := range []string{s.listenURL, broadcastHTTP} {
		status, body := s.get(base + "/readyz")
		require.Equal(t, 200, status)
		require.Equal(t, `{"status":"ok"}`, body)
	}
	c := s.subscribe("a")
	stopped := make(chan error, 1)
	go func() { stopped <- s.stop() }()
	s.waitLog(`msg="shutting down"`)
	for _, base := range []string{s.listenURL, broadcastHTTP} {
		status, body := s.get(base + "/readyz")
		assert.Equal(t, 503, status)
		assert.Equal(t, `{"status":"shutting down"}`, body)
		status, _ = s.get(base + "/healthz")
		assert.Equal(t, 200, status, "alive while draining")
	}
	// The subscriber is still served while readiness is off.
	s.publish("a", `"draining"`)
	require.Equal(t, eventJSON("a", `"draining"`), readEvent(t, c))
	require.NoError(t, <-stopped)
}

func TestLocalSocketPublishesWithoutToken(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "run", "eventsrv.sock")
	s := startServer(t, map[string]string{"LISTEN_SOCKET": sock, "LISTEN_SOCKET_MODE": "0600"})
	s.waitLog(`server=socket`)
	info, err := os.Stat(sock)
	require.NoError(t, err)
	assert.Equal(t, os.ModeSocket, info.Mode().Type())
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm())

	c := s.subscribe("local")
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", sock)
	}}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Post("http://eventsrv/event", "", strings.NewReader(`{"event":"local","data":7}`))
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, `{"code":"OK","id":"ID"}`, anyID(plainBody(t, body)))
	require.Equal(t, eventJSON("local", "7"), readEvent(t, c))

	require.NoError(t, s.stop())
	_, err = os.Stat(sock)
	assert.True(t, os.IsNotExist(err), "the socket file is removed at shutdown")
}

func TestLocalSocketPathChecks(t *testing.T) {
	dir := t.TempDir()
	notSocket := filepath.Join(dir, "file")
	require.NoError(t, os.WriteFile(notSocket, nil, 0o600))
	err := run(context.Background(), []string{"eventsrv"}, mapEnv(map[string]string{
		"LISTEN_SOCKET": notSocket, "LISTEN_PORT": "0", "BROADCAST_PORT": "0", "BIND_ADDRESS": "127.0.0.1",
		"TOKENS_FILE": filepath.Join(dir, "tokens"),
	}), io.Discard, io.Discard)
	require.ErrorContains(t, err, "LISTEN_SOCKET")
	require.ErrorContains(t, err, "not a socket")

	// A socket left by a process that died is replaced.
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	require.NoError(t, err)
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	s := startServer(t, map[string]string{"LISTEN_SOCKET": stale})
	s.waitLog(`server=socket`)

	err = run(context.Background(), []string{"eventsrv"}, mapEnv(map[string]string{"LISTEN_SOCKET_MODE": "rw"}), io.Discard, io.Discard)
	require.ErrorContains(t, err, "LISTEN_SOCKET_MODE")
}
