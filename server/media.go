package server

import (
	"net/http"

	"github.com/bootpilot/bootpilot/internal/provision"
)

// MediaHandler serves /media/v1/<name>.iso?exp=…&id=…&sig=… (GET, HEAD,
// Range): mounted on the HTTPS server, and by `bootpilot serve
// --media-listen` on a plain-HTTP listener for BMCs that cannot verify a
// private CA. See provision.Core.MediaHandler; without a media key it
// answers 404.
func (s *Server) MediaHandler() http.Handler { return s.core.MediaHandler() }

// PlainMediaWarning is logged as a warning at start when media URLs are
// plain http:// (--media-listen, or an http:// --media-url).
const PlainMediaWarning = provision.PlainMediaWarning
