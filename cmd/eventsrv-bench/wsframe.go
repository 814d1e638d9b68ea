package main

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"unicode/utf8"

	"github.com/gorilla/websocket"
)

// This file reads the server's side of a WebSocket connection (RFC 6455)
// from raw bytes, for the epoll reader (rawread_linux.go), which reads
// sockets itself instead of through gorilla. It is the client's side only:
// server frames are never masked, and control frames are answered by the
// caller.

// WebSocket opcodes (RFC 6455 section 5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// maxControlPayload is the largest control frame payload (section 5.5).
const maxControlPayload = 125

// Why the server's byte stream was refused. Like gorilla, the reader ends
// the connection on any of them.
var (
	errMaskedFrame     = errors.New("websocket: the server sent a masked frame")
	errReservedBits    = errors.New("websocket: the server set reserved bits (no extension was negotiated)")
	errUnknownOpcode   = errors.New("websocket: the server sent an unknown opcode")
	errBadControl      = errors.New("websocket: the server sent a fragmented or oversized control frame")
	errBadContinuation = errors.New("websocket: the server sent a continuation frame out of place")
	errReadLimit       = errors.New("websocket: read limit exceeded")
	errBadCloseFrame   = errors.New("websocket: the server sent a malformed close frame")
)

// errUnexpectedEOF is what gorilla reports for a connection that ended
// without a close frame, kept identical so that both readers report alike.
var errUnexpectedEOF = &websocket.CloseError{Code: websocket.CloseAbnormalClosure, Text: io.ErrUnexpectedEOF.Error()}

// frameSink receives what frameReader finds in the stream.
type frameSink interface {
	// message is one whole data message; frame is valid only during the
	// call.
	message(kind int, frame []byte)
	// ping is a ping frame's payload, to be answered with a pong.
	ping(payload []byte)
	// closed is the server's close frame, already parsed.
	closed(ce *websocket.CloseError)
}

// frameReader splits the server's byte stream into messages. A message
// that arrives in fragments is assembled in msg.
type frameReader struct {
	limit   int    // the largest message accepted, in bytes
	msg     []byte // a fragmented message, so far
	msgKind int    // its opcode; 0 when no fragmented message is open
}

// feed consumes every whole frame at the start of data, calls sink for
// each, and returns how many bytes it consumed: the rest is the start of a
// frame, to be fed again with more bytes after it. After the close frame
// it consumes nothing more. Any error ends the connection.
func (r *frameReader) feed(data []byte, sink frameSink) (int, error) {
	used := 0
	for {
		fin, op, payload, n, err := r.next(data[used:])
		if err != nil || n == 0 {
			return used, err
		}
		used += n
		if done, err := r.dispatch(fin, op, payload, sink); done || err != nil {
			return used, err
		}
	}
}

// next parses the frame header at the start of data. It returns n == 0
// when data does not yet hold the whole frame.
func (r *frameReader) next(data []byte) (fin bool, op byte, payload []byte, n int, err error) {
	if len(data) < 2 {
		return false, 0, nil, 0, nil
	}
	b0, b1 := data[0], data[1]
	switch {
	case b1&0x80 != 0:
		return false, 0, nil, 0, errMaskedFrame
	case b0&0x70 != 0:
		return false, 0, nil, 0, errReservedBits
	}
	fin, op = b0&0x80 != 0, b0&0x0f
	size, head := uint64(b1&0x7f), 2
	switch size {
	case 126:
		if len(data) < 4 {
			return false, 0, nil, 0, nil
		}
		size, head = uint64(binary.BigEndian.Uint16(data[2:])), 4
	case 127:
		if len(data) < 10 {
			return false, 0, nil, 0, nil
		}
		size, head = binary.BigEndian.Uint64(data[2:]), 10
	}
	if op >= opClose && (!fin || size > maxControlPayload) {
		return false, 0, nil, 0, errBadControl
	}
	// The limit is checked before waiting for the payload, so that a
	// huge length cannot make the caller buffer it.
	if size > uint64(r.limit)-uint64(len(r.msg)) {
		return false, 0, nil, 0, errReadLimit
	}
	end := head + int(size)
	if len(data) < end {
		return false, 0, nil, 0, nil
	}
	return fin, op, data[head:end], end, nil
}

// dispatch acts on one frame; done means the close frame was read.
func (r *frameReader) dispatch(fin bool, op byte, payload []byte, sink frameSink) (done bool, err error) {
	switch op {
	case opText, opBinary:
		if r.msgKind != 0 {
			return false, errBadContinuation
		}
		if fin {
			sink.message(int(op), payload)
			return false, nil
		}
		r.msg, r.msgKind = append(r.msg[:0], payload...), int(op)
	case opContinuation:
		if r.msgKind == 0 {
			return false, errBadContinuation
		}
		r.msg = append(r.msg, payload...)
		if fin {
			kind := r.msgKind
			sink.message(kind, r.msg)
			r.msg, r.msgKind = r.msg[:0], 0
		}
	case opPing:
		sink.ping(payload)
	case opPong:
	case opClose:
		ce, err := parseClose(payload)
		if err != nil {
			return true, err
		}
		sink.closed(ce)
		return true, nil
	default:
		return false, errUnknownOpcode
	}
	return false, nil
}

// parseClose reads a close frame's payload: empty, or a status code and a
// UTF-8 reason.
func parseClose(payload []byte) (*websocket.CloseError, error) {
	switch {
	case len(payload) == 0:
		return &websocket.CloseError{Code: websocket.CloseNoStatusReceived}, nil
	case len(payload) == 1 || !utf8.Valid(payload[2:]):
		return nil, errBadCloseFrame
	}
	return &websocket.CloseError{Code: int(binary.BigEndian.Uint16(payload)), Text: string(payload[2:])}, nil
}

// appendClientFrame appends a client frame: FIN set, masked with key as
// RFC 6455 requires of clients. payload must fit a control frame or be
// small; only control frames and the init message are written this way.
func appendClientFrame(dst []byte, op byte, payload []byte, key [4]byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n <= maxControlPayload:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		panic(fmt.Sprintf("appendClientFrame: %d-byte payload", n))
	}
	dst = append(dst, key[:]...)
	for i, b := range payload {
		dst = append(dst, b^key[i&3])
	}
	return dst
}
