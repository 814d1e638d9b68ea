package broadcast

import (
	"errors"
	"maps"
	"slices"
	"strconv"
	"time"

	"eventsrv/auth"
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

var allCodes = []InitCode{InitOK, InitInvalidSyntax, InitInvalidEventsMissing, InitAuthUnrecognizedScheme,
	InitUnauthenticated, InitTooManyEvents, InitForbidden, InitNameTooLong}

// replyFrames builds every reply of one type once.
func replyFrames(typ string, codes []InitCode) map[InitCode][]byte {
	m := make(map[InitCode][]byte, len(codes))
	for _, c := range codes {
		m[c] = textFrame([]byte(`{"type":"` + typ + `","code":"` + string(c) + `"}`))
	}
	return m
}

var (
	initReplies        = replyFrames(typeInit, allCodes)
	subscribeReplies   = replyFrames(typeSubscribe, allCodes)
	unsubscribeReplies = replyFrames(typeUnsubscribe, allCodes)
	invalidTypeReply   = replyFrames(typeError, []InitCode{InitInvalidType})[InitInvalidType]
)

// handleMessage answers one message from the subscriber and reports
// whether it was a successful init.
func (c *client) handleMessage(msg []byte) bool {
	in, err := ParseInit(msg)
	// A re-check of the credential (Hub.Recheck) sees the permissions and
	// the subscriptions before or after this message, never in between.
	c.authMu.Lock()
	defer c.authMu.Unlock()
	switch in.Type {
	case "", typeInit:
		return c.handleInit(in, err)
	case typeSubscribe:
		c.handleSubscribe(in, err)
	case typeUnsubscribe:
		c.handleUnsubscribe(in, err)
	default:
		c.enqueue(invalidTypeReply)
	}
	return false
}

// handleInit answers an init message. A failed init changes nothing; a
// successful one adds its events to the subscription, its OK arrives before
// the first event, and its token's permissions apply to later subscribes.
func (c *client) handleInit(in Init, parseErr error) bool {
	code, perms, added := c.checkInit(in, parseErr)
	if code != InitOK {
		c.enqueue(initReplies[code])
		c.hub.opts.Log.Debug("init refused", "remote", c.remote, "code", code)
		return false
	}
	c.grant(perms)
	c.addSubscriptions(added, in.Since, c.okReply(typeInit))
	return true
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

func (c *client) checkInit(in Init, parseErr error) (InitCode, auth.Permissions, []string) {
	switch {
	case errors.Is(parseErr, ErrInvalidSyntax):
		return InitInvalidSyntax, auth.Permissions{}, nil
	case parseErr != nil:
		return InitInvalidEventsMissing, auth.Permissions{}, nil
	}
	perms, err := c.hub.auth.Authenticate(in.Authentication, c.remote, "websocket")
	if err != nil {
		if errors.Is(err, auth.ErrUnrecognizedScheme) {
			return InitAuthUnrecognizedScheme, auth.Permissions{}, nil
		}
		return InitUnauthenticated, auth.Permissions{}, nil
	}
	code, added := c.newEvents(in.Events, perms)
	return code, perms, added
}

// handleSubscribe adds events at run time, with the permissions of the
// last successful init.
func (c *client) handleSubscribe(in Init, parseErr error) {
	code, added := InitOK, []string(nil)
	switch {
	case !c.initialized.Load():
		code = InitUnauthenticated
	case errors.Is(parseErr, ErrInvalidSyntax):
		code = InitInvalidSyntax
	case parseErr != nil:
		code = InitInvalidEventsMissing
	default:
		code, added = c.newEvents(in.Events, c.perms)
	}
	if code != InitOK {
		c.enqueue(subscribeReplies[code])
		return
	}
	c.addSubscriptions(added, in.Since, c.okReply(typeSubscribe))
}

// handleUnsubscribe removes events at run time; names not subscribed are
// ignored. No event published after the OK is delivered for them.
func (c *client) handleUnsubscribe(in Init, parseErr error) {
	switch {
	case !c.initialized.Load():
		c.enqueue(unsubscribeReplies[InitUnauthenticated])
		return
	case errors.Is(parseErr, ErrInvalidSyntax):
		c.enqueue(unsubscribeReplies[InitInvalidSyntax])
		return
	case parseErr != nil:
		c.enqueue(unsubscribeReplies[InitInvalidEventsMissing])
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
	c.enqueue(unsubscribeReplies[InitOK])
}

// newEvents checks events against the name limit, perms and the
// subscription limit and returns the names not yet subscribed, in linear
// time: a message of many names costs no more per name than one of few.
func (c *client) newEvents(events []string, perms auth.Permissions) (InitCode, []string) {
	var added []string
	seen := make(map[string]struct{}, len(events))
	for _, e := range events {
		if limit := c.hub.opts.MaxEventNameBytes; limit > 0 && len(e) > limit {
			return InitNameTooLong, nil
		}
		if !perms.Subscribe.Allows(e) {
			return InitForbidden, nil
		}
		if _, ok := c.subs[e]; ok {
			continue
		}
		if _, ok := seen[e]; ok {
			continue
		}
		if len(c.subs)+len(added) == c.hub.opts.MaxSubscriptions {
			return InitTooManyEvents, nil
		}
		seen[e] = struct{}{}
		added = append(added, e)
	}
	return InitOK, added
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
// the events missed come first and the reply, which then says where the
// subscription continues and whether nothing was lost, marks the end of
// the replay.
func (c *client) okReply(typ string) func(*resumed) [][]byte {
	return func(r *resumed) [][]byte {
		if r == nil {
			if typ == typeInit {
				return [][]byte{initReplies[InitOK]}
			}
			return [][]byte{subscribeReplies[InitOK]}
		}
		return append(r.frames, resumeReply(typ, r))
	}
}

// resumeReply is the OK of a resuming init or subscribe:
// {"type":"init","code":"OK","id":"<position>","recovered":true}.
func resumeReply(typ string, r *resumed) []byte {
	b := make([]byte, 0, 96)
	b = append(b, `{"type":"`+typ+`","code":"OK","id":"`...)
	b = r.position.AppendTo(b)
	b = append(b, `","recovered":`...)
	b = strconv.AppendBool(b, r.recovered)
	return textFrame(append(b, '}'))
}

// publishSubList stores a copy of the subscription for Clients, which
// sorts it: a subscribe costs a copy, not a sort.
func (c *client) publishSubList() {
	list := slices.Collect(maps.Keys(c.subs))
	c.subList.Store(&list)
}
