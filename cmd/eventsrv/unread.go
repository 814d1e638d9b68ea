package main

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"time"
)

// closeUnread closes the connection of a request whose body the handler
// did not read to its end, as soon as the answer is written, rather than
// keep it while net/http waits to read a body nobody needs (it would wait
// for READ_TIMEOUT, and before answering): a peer that announces a body
// and never sends it cannot hold the socket. Requests without a body, and
// those whose body was read, are untouched (keep-alive stays).
func closeUnread(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 {
			next.ServeHTTP(w, r)
			return
		}
		body := &eofReader{ReadCloser: r.Body}
		r.Body = body
		uw := &unreadWriter{ResponseWriter: w, body: body}
		next.ServeHTTP(uw, r)
		if !uw.hijacked && !body.eof {
			// net/http reads what is left of the body before it closes
			// the connection; a deadline in the past ends that read.
			_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		}
	})
}

// eofReader notes whether a request body was read to its end.
type eofReader struct {
	io.ReadCloser
	eof bool
}

func (b *eofReader) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.eof = true
	}
	return n, err
}

// unreadWriter is closeUnread's response writer: an answer written while
// the body is unread asks for the connection to be closed, and a handler
// that takes the connection over (WebSocket, SSE) keeps it.
type unreadWriter struct {
	http.ResponseWriter
	body        *eofReader
	wroteHeader bool
	hijacked    bool
}

func (u *unreadWriter) WriteHeader(status int) {
	if !u.wroteHeader && !u.body.eof {
		u.Header().Set("Connection", "close")
	}
	u.wroteHeader = true
	u.ResponseWriter.WriteHeader(status)
}

func (u *unreadWriter) Write(p []byte) (int, error) {
	if !u.wroteHeader {
		u.WriteHeader(http.StatusOK)
	}
	return u.ResponseWriter.Write(p)
}

func (u *unreadWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	u.hijacked = true
	return http.NewResponseController(u.ResponseWriter).Hijack()
}

func (u *unreadWriter) Unwrap() http.ResponseWriter { return u.ResponseWriter }
