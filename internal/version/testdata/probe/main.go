// Command probe prints internal/version's Info as JSON; version_test.go
// builds it with -ldflags to check the documented -X paths.
package main

import (
	"encoding/json"
	"os"

	"github.com/bootpilot/bootpilot/internal/version"
)

func main() {
	_ = json.NewEncoder(os.Stdout).Encode(version.Get())
}
