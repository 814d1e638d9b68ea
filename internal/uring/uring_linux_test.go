package uring

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// newRing returns a ring, or skips the test where the kernel refuses
// io_uring (the broadcast flushers then fall back to send(2), which their
// own tests cover).
func newRing(t *testing.T, entries uint32) *Ring {
	t.Helper()
	r, err := New(entries)
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("io_uring refused here: %v", err)
	}
	require.NoError(t, err)
	t.Cleanup(func() { r.Close() })
	return r
}

// tcpPair returns both ends of a loopback TCP connection and the sending
// end's descriptor (non-blocking, as Go's sockets are).
func tcpPair(t *testing.T) (send *net.TCPConn, recv net.Conn, fd int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	s, err := ln.Accept()
	require.NoError(t, err)
	t.Cleanup(func() { c.Close(); s.Close() })
	raw, err := c.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	require.NoError(t, raw.Control(func(d uintptr) { fd = int(d) }))
	return c.(*net.TCPConn), s, fd
}

func TestSendBatch(t *testing.T) {
	r := newRing(t, 8)
	assert.GreaterOrEqual(t, r.Entries(), 8)
	var fds []int
	var recvs []net.Conn
	var bufs [][]byte
	for i := range 3 {
		_, recv, fd := tcpPair(t)
		fds, recvs = append(fds, fd), append(recvs, recv)
		bufs = append(bufs, bytes.Repeat([]byte{byte('a' + i)}, 100*(i+1)))
	}
	// Twice, so that the rings' heads and tails move on past one batch.
	for range 2 {
		n, errs := make([]int, 3), make([]error, 3)
		require.NoError(t, r.Send(fds, bufs, n, errs))
		for i := range fds {
			require.NoError(t, errs[i])
			assert.Equal(t, len(bufs[i]), n[i], "socket %d took everything", i)
			got := make([]byte, len(bufs[i]))
			_, err := io.ReadFull(recvs[i], got)
			require.NoError(t, err)
			assert.Equal(t, bufs[i], got)
		}
	}
}

// TestSendNeverBlocks: a socket whose peer does not read takes part of a
// large buffer, then nothing (EAGAIN is 0 bytes and no error), and Send
// returns at once both times.
func TestSendNeverBlocks(t *testing.T) {
	r := newRing(t, 4)
	send, _, fd := tcpPair(t)
	require.NoError(t, send.SetWriteBuffer(4096))
	big := make([]byte, 8<<20)
	n, errs := make([]int, 1), make([]error, 1)
	require.NoError(t, r.Send([]int{fd}, [][]byte{big}, n, errs))
	require.NoError(t, errs[0])
	assert.Positive(t, n[0])
	assert.Less(t, n[0], len(big), "the peer reads nothing, so not all of it fits")
	// The receiver's window may still open a little; then it is full.
	for range 100 {
		require.NoError(t, r.Send([]int{fd}, [][]byte{big}, n, errs))
		require.NoError(t, errs[0], "a full socket is not an error")
		if n[0] == 0 {
			return
		}
	}
	t.Fatal("the socket never filled up")
}

// TestSendErrorsAreBySocket: one send's failure is its own; the others of
// the batch go out.
func TestSendErrorsAreBySocket(t *testing.T) {
	r := newRing(t, 4)
	_, recv, good := tcpPair(t)
	pr, pw, err := os.Pipe()
	require.NoError(t, err)
	defer pr.Close()
	defer pw.Close()
	notSocket := int(pw.Fd())
	n, errs := make([]int, 2), make([]error, 2)
	require.NoError(t, r.Send([]int{notSocket, good}, [][]byte{[]byte("x"), []byte("ok")}, n, errs))
	assert.ErrorIs(t, errs[0], syscall.ENOTSOCK)
	assert.Zero(t, n[0])
	require.NoError(t, errs[1])
	assert.Equal(t, 2, n[1])
	got := make([]byte, 2)
	_, err = io.ReadFull(recv, got)
	require.NoError(t, err)
	assert.Equal(t, "ok", string(got))
}

func TestSendRefusesMoreThanTheRing(t *testing.T) {
	r := newRing(t, 2)
	k := r.Entries() + 1
	err := r.Send(make([]int, k), make([][]byte, k), make([]int, k), make([]error, k))
	assert.ErrorContains(t, err, "for a ring of")
	assert.NoError(t, r.Send(nil, nil, nil, nil), "an empty batch is nothing to do")
}
