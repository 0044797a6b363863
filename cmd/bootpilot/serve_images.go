package main

import (
	"log/slog"

	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/images"
)

// imageOptions configures the image cache from the --image-* flags: the
// origins remote sources may come from, whether private addresses may be
// dialled, the directories files may be imported from by path, the size
// cap.
func imageOptions(cfg config.Config, log *slog.Logger) []images.Option {
	return []images.Option{
		images.WithLogger(log),
		images.WithOrigins(cfg.ImageOrigins...),
		images.WithAllowPrivate(cfg.ImageAllowPrivate),
		images.WithImportDirs(cfg.ImageImportDirs...),
		images.WithMaxSize(cfg.ImageMaxSize),
	}
}
