package main

import (
	"crypto/x509"
	"fmt"
	"os"
	"time"

	"github.com/bootpilot/bootpilot/imagebuilder"
	"github.com/bootpilot/bootpilot/internal/config"
	"github.com/bootpilot/bootpilot/internal/pki"
)

// serveDBCert returns the Secure Boot db certificate the server's ISOs are
// signed with, which `bootpilot bmc secure-boot NAME enroll` adds to hosts'
// db through their BMCs: --db-cert with --db-key, nil with --iso-unsigned,
// otherwise the one in the data dir (isoBuilder made it; the same choice).
func serveDBCert(cfg config.Config) (*x509.Certificate, error) {
	switch {
	case cfg.DBKey != "":
		key, err := os.ReadFile(cfg.DBKey)
		if err != nil {
			return nil, fmt.Errorf("--db-key: %w", err)
		}
		cert, err := os.ReadFile(cfg.DBCert)
		if err != nil {
			return nil, fmt.Errorf("--db-cert: %w", err)
		}
		s, err := imagebuilder.LoadSigner(key, cert)
		if err != nil {
			return nil, fmt.Errorf("--db-key/--db-cert: %w", err)
		}
		return s.Cert, nil
	case cfg.ISOUnsigned:
		return nil, nil
	}
	db, _, err := pki.EnsureDB(pki.DBFilesIn(cfg.DataDir), time.Now())
	if err != nil {
		return nil, err
	}
	return db.Cert, nil
}
