package server_test

import "os"

func tempDir() (string, error) { return os.MkdirTemp("", "bootpilot-pki-") }
