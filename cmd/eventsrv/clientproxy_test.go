package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
)

// cutProxy is a TCP proxy for the client's tests: it forwards each
// connection to target and cuts it (closes both sides, no close frame) where
// the connection's plan says. For WebSocket connections it reads the
// server's side as frames: it knows the HTTP answer, the init's reply with
// its "replayed" count, and every event frame, so that a plan can cut in
// the middle of a replay on purpose, and the test can count such cuts.
type cutProxy struct {
	t      *testing.T
	ln     net.Listener
	target string
	plan   func(n int) cutPlan // the plan of connection n (from 1)

	cutting atomic.Bool // plans are followed only while set
	conns   atomic.Int32
	wg      sync.WaitGroup

	mu         sync.Mutex
	open       map[net.Conn]struct{}
	cuts       int // connections the proxy cut
	midReplay  int // of them, inside a replay (after its reply, before its last event)
	midFrame   int // of them, in the middle of a frame
	beforeInit int // of them, before the init's reply reached the client
}

// cutPlan is where to cut one connection, counted in what the server sends.
type cutPlan struct {
	bytes int // cut after this many bytes (HTTP answer included); 0: not by bytes
	// frames: cut after this many frames; 0: not by frames.
	frames int
	// inReplay: cut after a random number of the replay's events (of a
	// reply that announced two or more), part of the next one included;
	// a connection without such a replay is cut after frames.
	inReplay bool
	// anyAnswer: for plain HTTP, cut when the server's first byte comes,
	// so that the client never sees the answer.
	anyAnswer bool
}

func newCutProxy(t *testing.T, target string, plan func(n int) cutPlan) *cutProxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &cutProxy{t: t, ln: ln, target: target, plan: plan, open: map[net.Conn]struct{}{}}
	p.cutting.Store(true)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *cutProxy) addr() string { return p.ln.Addr().String() }

func (p *cutProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		n := int(p.conns.Add(1))
		p.wg.Go(func() { p.serve(n, c) })
	}
}

// close stops accepting and cuts every connection.
func (p *cutProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.open {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// track registers c to be closed by close; false when closing began.
func (p *cutProxy) track(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		p.open[c] = struct{}{}
	}
}

func (p *cutProxy) untrack(cs ...net.Conn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range cs {
		delete(p.open, c)
	}
}

func (p *cutProxy) stats() (cuts, midReplay, midFrame, beforeInit int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.cuts, p.midReplay, p.midFrame, p.beforeInit
}

func (p *cutProxy) serve(n int, client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		client.Close()
		return
	}
	p.track(client, server)
	defer func() {
		client.Close()
		server.Close()
		p.untrack(client, server)
	}()
	plan := p.plan(n)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, _ = io.Copy(server, client)
		server.Close()
	}()
	p.forward(plan, server, client)
	client.Close()
	server.Close()
	<-done
}

// sideState is what the proxy knows of the server's side of a connection.
type sideState struct {
	sent       int  // bytes forwarded
	frames     int  // frames forwarded
	replied    bool // the init's reply was forwarded
	replayLeft int  // replay events still to come after it
	replayCut  int  // with inReplay: cut after this many more replay events (-1: none chosen)
}

// forward copies the server's side to the client, following plan.
func (p *cutProxy) forward(plan cutPlan, server io.Reader, client io.Writer) {
	br := bufio.NewReader(server)
	st := sideState{replayCut: -1}
	write := func(b []byte) bool {
		if plan.bytes > 0 && p.cutting.Load() && st.sent+len(b) >= plan.bytes {
			part := plan.bytes - st.sent
			_, _ = client.Write(b[:part])
			p.recordCut(&st, part > 0 && part < len(b))
			return false
		}
		_, err := client.Write(b)
		st.sent += len(b)
		return err == nil
	}
	if plan == (cutPlan{}) {
		_, _ = io.Copy(client, br) // a plain forward
		return
	}
	if plan.anyAnswer {
		if _, err := br.Peek(1); err == nil && p.cutting.Load() {
			p.recordCut(&st, false)
		} else {
			_, _ = io.Copy(client, br)
		}
		return
	}
	// The HTTP answer to the upgrade, up to its blank line.
	for {
		line, err := br.ReadBytes('\n')
		if len(line) > 0 && !write(line) {
			return
		}
		if err != nil {
			return
		}
		if bytes.Equal(line, []byte("\r\n")) {
			break
		}
	}
	for {
		header, payload, err := readServerFrame(br)
		if err != nil {
			return
		}
		text := header[0]&0x0f == 1
		replayed := -1 // this frame is the init's reply, announcing replayed events
		if text && !st.replied {
			var r struct {
				Type     string `json:"type"`
				Replayed int    `json:"replayed"`
			}
			if json.Unmarshal(payload, &r) == nil && r.Type == "init" {
				replayed = r.Replayed
			}
		}
		inReplay := text && replayed < 0 && st.replayLeft > 0
		if inReplay && st.replayCut == 0 && p.cutting.Load() {
			// Cut inside the replay: part of this event goes through.
			whole := append(header, payload...)
			_, _ = client.Write(whole[:rand.IntN(len(whole))])
			p.recordCut(&st, true)
			return
		}
		if !write(append(header, payload...)) {
			return
		}
		st.frames++
		switch {
		case replayed >= 0:
			st.replied, st.replayLeft = true, replayed
			if plan.inReplay && replayed >= 2 {
				st.replayCut = rand.IntN(replayed)
			}
		case inReplay:
			st.replayLeft--
			if st.replayCut > 0 {
				st.replayCut--
			}
		}
		if plan.frames > 0 && st.frames >= plan.frames && st.replayCut < 0 && p.cutting.Load() {
			p.recordCut(&st, false)
			return
		}
	}
}

func (p *cutProxy) recordCut(st *sideState, midFrame bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cuts++
	if midFrame {
		p.midFrame++
	}
	switch {
	case !st.replied:
		p.beforeInit++
	case st.replayLeft > 0:
		p.midReplay++
	}
}

// readServerFrame reads one WebSocket frame as a server sends it
// (unmasked): its header and its payload.
func readServerFrame(r *bufio.Reader) (header, payload []byte, err error) {
	header = make([]byte, 2, 10)
	if _, err = io.ReadFull(r, header); err != nil {
		return nil, nil, err
	}
	n := uint64(header[1] & 0x7f)
	switch n {
	case 126:
		ext := make([]byte, 2)
		if _, err = io.ReadFull(r, ext); err != nil {
			return nil, nil, err
		}
		header = append(header, ext...)
		n = uint64(binary.BigEndian.Uint16(ext))
	case 127:
		ext := make([]byte, 8)
		if _, err = io.ReadFull(r, ext); err != nil {
			return nil, nil, err
		}
		header = append(header, ext...)
		n = binary.BigEndian.Uint64(ext)
	}
	payload = make([]byte, n)
	_, err = io.ReadFull(r, payload)
	return header, payload, err
}
