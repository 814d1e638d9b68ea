// Package jsonhttp writes the service's small JSON answers: every answer
// of every server is JSON, with its length set, ending in a newline (so
// that curl's output does not run into the prompt), and every error is a
// code with a message.
package jsonhttp

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
)

// Write answers status with body, which must be JSON; a newline follows it.
func Write(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// Error answers status with {"code":"<code>","message":"<message>"}: the
// code for programs, which match on it (codes are upper-case ASCII
// constants, so they need no escaping), and the message for people: what
// went wrong and what to do. A message never holds a credential.
func Error(w http.ResponseWriter, status int, code, message string) {
	Write(w, status, []byte(`{"code":"`+code+`","message":`+Quote(message)+`}`))
}

// Quote is s as a JSON string, with <, > and & as they are: messages say
// "Basic <token>", and people read them in a terminal.
func Quote(s string) string {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(s) // a string: cannot fail
	return string(bytes.TrimSuffix(b.Bytes(), []byte("\n")))
}

// Value answers status with v encoded as JSON.
func Value(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		Error(w, http.StatusInternalServerError, "INTERNAL", "the answer could not be encoded: "+err.Error())
		return
	}
	Write(w, status, body)
}
