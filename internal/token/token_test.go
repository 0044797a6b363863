package token_test

import (
	"testing"

	"github.com/bootpilot/bootpilot/internal/token"
)

func TestToken(t *testing.T) {
	p1, h1 := token.New()
	p2, _ := token.New()
	if len(p1) != 32 || p1 == p2 {
		t.Fatalf("New() = %q, %q: want distinct 128-bit hex tokens", p1, p2)
	}
	if h1 == p1 || len(h1) != 64 || token.Hash(p1) != h1 {
		t.Errorf("hash %q of %q", h1, p1)
	}
	if !token.Match(h1, p1) || token.Match(h1, p2) || token.Match("", "") || token.Match(h1, "") {
		t.Error("Match accepts a wrong or empty token")
	}
	if p, _ := token.NewN(32); len(p) != 64 {
		t.Errorf("NewN(32) = %d hex digits, want 64", len(p))
	}
}
