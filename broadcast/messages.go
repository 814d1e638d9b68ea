package broadcast

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"eventsrv/auth"
	"eventsrv/internal/jsonhttp"
)

// InitCode is the code of a reply: {"type":"<type>","code":"<InitCode>"}.
type InitCode string

// The reply codes. The first five are the old service's.
const (
	InitOK                     InitCode = "OK"
	InitInvalidSyntax          InitCode = "INVALID_SYNTAX"
	InitInvalidEventsMissing   InitCode = "INVALID_EVENTS_MISSING"
	InitAuthUnrecognizedScheme InitCode = "AUTH_UNRECOGNIZED_SCHEME"
	InitUnauthenticated        InitCode = "UNAUTHENTICATED"
	// InitTooManyEvents: the message would take the connection past
	// MAX_SUBSCRIPTIONS event names; nothing is added.
	InitTooManyEvents InitCode = "INVALID_EVENTS_TOO_MANY"
	// InitForbidden: the token may not subscribe to one of the events;
	// nothing is added.
	InitForbidden InitCode = "FORBIDDEN"
	// InitInvalidType: the message's type is not init, subscribe or
	// unsubscribe (answered with type "error").
	InitInvalidType InitCode = "INVALID_TYPE"
	// InitNameTooLong: an event name is longer than MAX_EVENT_NAME_BYTES;
	// nothing is added.
	InitNameTooLong InitCode = "EVENT_NAME_TOO_LONG"
)

// Message types.
const (
	typeInit        = "init"
	typeSubscribe   = "subscribe"
	typeUnsubscribe = "unsubscribe"
	typeError       = "error"
)

// okFrame is the frame of an OK to a message of type typ, built once:
// {"type":"<typ>","code":"OK"}, byte for byte the old service's.
func okFrame(typ string) []byte {
	return textFrame([]byte(`{"type":"` + typ + `","code":"OK"}`))
}

var (
	initOK           = okFrame(typeInit)
	subscribeOK      = okFrame(typeSubscribe)
	unsubscribeOK    = okFrame(typeUnsubscribe)
	invalidTypeReply = (&refusal{InitInvalidType, `"type" must be "init", "subscribe", "unsubscribe", or for work queues "work", "assign", "reject" or "done"`}).reply(typeError)
)

// handleMessage answers one message from the subscriber.
func (c *client) handleMessage(msg []byte) {
	in, err := ParseInit(msg)
	// A re-check of the credential (Hub.Recheck) sees the permissions and
	// the subscriptions before or after this message, never in between.
	c.authMu.Lock()
	defer c.authMu.Unlock()
	switch in.Type {
	case "", typeInit:
		c.handleInit(in, err)
	case typeSubscribe:
		c.handleSubscribe(in, err)
	case typeUnsubscribe:
		c.handleUnsubscribe(in, err)
	case typeWork, typeAssign, typeReject, typeDone:
		c.handleWork(in.Type, msg)
	default:
		c.enqueue(invalidTypeReply)
	}
}

// refusal is why a message is refused: the code, for programs, and a
// message for people (what was wrong and what to send instead), which never
// holds a credential.
type refusal struct {
	code    InitCode
	message string
}

// reply is the frame that refuses a message of type typ:
// {"type":"<typ>","code":"<code>","message":"<message>"}.
func (r *refusal) reply(typ string) []byte {
	return textFrame([]byte(`{"type":"` + typ + `","code":"` + string(r.code) + `","message":` + jsonhttp.Quote(r.message) + `}`))
}

// parseRefusal refuses a message ParseInit could not read.
func parseRefusal(err error) *refusal {
	if errors.Is(err, ErrInvalidSyntax) {
		return &refusal{InitInvalidSyntax, err.Error()}
	}
	return &refusal{InitInvalidEventsMissing, err.Error() + `, e.g. "events":["order.created"]`}
}

// notInitialized refuses a subscribe or unsubscribe before any init.
var notInitialized = &refusal{InitUnauthenticated, "send a successful init first: {\"authentication\":\"Basic <token>\",\"events\":[...]}"}

// handleInit answers an init message. A failed init changes nothing; a
// successful one adds its events to the subscription, its OK arrives before
// the first event, and its token's permissions apply to later subscribes.
func (c *client) handleInit(in Init, parseErr error) {
	perms, added, refused := c.checkInit(in, parseErr)
	if refused != nil {
		c.enqueue(refused.reply(typeInit))
		c.hub.opts.Log.Debug("init refused", "remote", c.remote, "code", refused.code)
		return
	}
	c.grant(perms)
	// Initialized before the OK is queued: a peer that has its OK is one
	// that the sweep and Recheck treat as logged in.
	if !c.initialized.Swap(true) {
		c.keepAlive()
	}
	c.addSubscriptions(added, in.Since, c.okReply(typeInit))
}

// grant makes perms the connection's: later subscribes are checked with
// them, and the connection is closed when the credential expires.
func (c *client) grant(perms auth.Permissions) {
	c.perms = perms
	var expires *time.Time // nil: the credential does not expire
	if !perms.Expires.IsZero() {
		// A time, not UnixNano, which has no value past 2262.
		expires = &perms.Expires
	}
	c.expires.Store(expires)
}

func (c *client) checkInit(in Init, parseErr error) (auth.Permissions, []string, *refusal) {
	if parseErr != nil {
		return auth.Permissions{}, nil, parseRefusal(parseErr)
	}
	perms, err := c.hub.auth.Authenticate(in.Authentication, c.remote, "websocket")
	if err != nil {
		code := InitUnauthenticated
		if errors.Is(err, auth.ErrUnrecognizedScheme) {
			code = InitAuthUnrecognizedScheme
		}
		return auth.Permissions{}, nil, &refusal{code, auth.Explain(err, in.Authentication, `"authentication"`)}
	}
	// A later init replaces the connection's credential (which is how a
	// client refreshes a JWT before it expires): the new one must allow
	// what the connection is subscribed to already.
	for name := range c.subs {
		if !perms.Subscribe.Covers(name) {
			return auth.Permissions{}, nil, &refusal{InitForbidden,
				fmt.Sprintf("this token may not subscribe to %q, which this connection is subscribed to; unsubscribe from it first, or use a token that allows it; nothing was changed", shortName(name))}
		}
	}
	added, refused := c.newEvents(in.Events, perms)
	return perms, added, refused
}

// handleSubscribe adds events at run time, with the permissions of the
// last successful init.
func (c *client) handleSubscribe(in Init, parseErr error) {
	var added []string
	var refused *refusal
	switch {
	case !c.initialized.Load():
		refused = notInitialized
	case parseErr != nil:
		refused = parseRefusal(parseErr)
	default:
		added, refused = c.newEvents(in.Events, c.perms)
	}
	if refused != nil {
		c.enqueue(refused.reply(typeSubscribe))
		return
	}
	c.addSubscriptions(added, in.Since, c.okReply(typeSubscribe))
}

// handleUnsubscribe removes events at run time; names not subscribed are
// ignored. No event published after the OK is delivered for them.
func (c *client) handleUnsubscribe(in Init, parseErr error) {
	switch {
	case !c.initialized.Load():
		c.enqueue(notInitialized.reply(typeUnsubscribe))
		return
	case parseErr != nil:
		c.enqueue(parseRefusal(parseErr).reply(typeUnsubscribe))
		return
	}
	removed := make(map[string]struct{})
	for _, e := range in.Events {
		if _, ok := c.subs[e]; ok {
			removed[e] = struct{}{}
			delete(c.subs, e)
		}
	}
	c.publishSubList()
	c.hub.unsubscribe(c, removed)
	// Queued after the removal: an event published after the OK is not
	// for this subscriber any more (one queued before it still arrives).
	c.enqueue(unsubscribeOK)
}

// newEvents checks events against the name limit, perms and the
// subscription limit and returns the names not yet subscribed, in linear
// time: a message of many names costs no more per name than one of few.
func (c *client) newEvents(events []string, perms auth.Permissions) ([]string, *refusal) {
	var added []string
	seen := make(map[string]struct{}, len(events))
	for _, e := range events {
		if limit := c.hub.opts.MaxEventNameBytes; limit > 0 && len(e) > limit {
			return nil, &refusal{InitNameTooLong,
				fmt.Sprintf("an event name is %d bytes; at most %d are allowed (MAX_EVENT_NAME_BYTES)", len(e), limit)}
		}
		if !perms.Subscribe.Covers(e) {
			return nil, &refusal{InitForbidden,
				fmt.Sprintf("this token may not subscribe to %q: no subscribe pattern of its role matches; nothing was added", shortName(e))}
		}
		if _, ok := c.subs[e]; ok {
			continue
		}
		if _, ok := seen[e]; ok {
			continue
		}
		if len(c.subs)+len(added) == c.hub.opts.MaxSubscriptions {
			return nil, &refusal{InitTooManyEvents,
				fmt.Sprintf("a connection subscribes to at most %d event names (MAX_SUBSCRIPTIONS); nothing was added", c.hub.opts.MaxSubscriptions)}
		}
		seen[e] = struct{}{}
		added = append(added, e)
	}
	return added, nil
}

// shortNameBytes is as much of an event name as a message shows.
const shortNameBytes = 64

// shortName is name cut to shortNameBytes, with "…" where it was cut.
func shortName(name string) string {
	if len(name) <= shortNameBytes {
		return name
	}
	return strings.ToValidUTF8(name[:shortNameBytes], "") + "…"
}

// addSubscriptions subscribes to added and queues the frames reply
// returns in the same step (see Hub.subscribe).
func (c *client) addSubscriptions(added []string, since *string, reply func(*resumed) [][]byte) {
	for _, e := range added {
		c.subs[e] = struct{}{}
	}
	c.publishSubList()
	c.hub.subscribe(c, added, since, reply)
}

// okReply answers a successful init or subscribe (typ). When it resumes,
// the reply comes first, saying where the subscription continues (its id,
// the position), whether nothing was lost (recovered) and how many
// replayed events follow it (replayed); then those events, oldest first;
// then live events. All are queued in one step under the publish lock
// (Hub.subscribe), so nothing is lost or repeated at the seam.
//
// The client's last ID, the since of its next resume, follows one rule:
// it is the id of each event as it arrives, and the reply's id once the
// reply's replayed events have all arrived (at once when replayed is 0).
// The position may be later than the last replayed event's id (events of
// other names came between), and the client has everything before it only
// once the replay is complete. A connection that drops mid-replay thus
// resumes from the last replayed event it got (or from the same since,
// when it got none), with nothing lost or repeated.
func (c *client) okReply(typ string) func(*resumed) [][]byte {
	return func(r *resumed) [][]byte {
		if r == nil {
			if typ == typeInit {
				return [][]byte{initOK}
			}
			return [][]byte{subscribeOK}
		}
		frames := make([][]byte, 0, 1+len(r.frames))
		frames = append(frames, resumeReply(typ, r))
		return append(frames, r.frames...)
	}
}

// resumeReply is the OK of a resuming init or subscribe, which comes
// before the replayed events:
// {"type":"init","code":"OK","id":"<position>","recovered":true,"replayed":<n>}.
func resumeReply(typ string, r *resumed) []byte {
	b := make([]byte, 0, 112)
	b = append(b, `{"type":"`+typ+`","code":"OK","id":"`...)
	b = r.position.AppendTo(b)
	b = append(b, `","recovered":`...)
	b = strconv.AppendBool(b, r.recovered)
	b = append(b, `,"replayed":`...)
	b = strconv.AppendInt(b, int64(len(r.frames)), 10)
	return textFrame(append(b, '}'))
}

// publishSubList stores a copy of the subscription for Clients, which
// sorts it: a subscribe costs a copy, not a sort.
func (c *client) publishSubList() {
	list := slices.Collect(maps.Keys(c.subs))
	c.subList.Store(&list)
}
