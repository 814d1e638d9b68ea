// Package jsonhttp writes the service's small JSON answers: every answer
// of every server is JSON, with its length set, and most are a code.
package jsonhttp

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// Write answers status with body, which must be JSON.
func Write(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// Code answers status with {"code":"<code>"}. Codes are upper-case ASCII
// constants, so they need no escaping.
func Code(w http.ResponseWriter, status int, code string) {
	Write(w, status, []byte(`{"code":"`+code+`"}`))
}

// Value answers status with v encoded as JSON.
func Value(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		Code(w, http.StatusInternalServerError, "INTERNAL")
		return
	}
	Write(w, status, body)
}
