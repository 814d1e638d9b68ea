// Package console holds the web console's page, embedded in the binary so
// that it works offline and from a fresh `go run ./cmd/eventsrv`: the
// listen server serves it at /console/.
package console

import (
	"embed"
	"io/fs"
)

//go:embed static
var static embed.FS

// Files is the page's files, index.html at the root.
var Files = mustSub(static, "static")

func mustSub(f fs.FS, dir string) fs.FS {
	sub, err := fs.Sub(f, dir)
	if err != nil {
		panic(err) // dir is a constant that go:embed has checked
	}
	return sub
}
