package store_test

import (
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

const benchHosts = 10_000

// benchDB returns a database of driver holding benchHosts hosts.
func benchDB(b *testing.B, driver string) *store.DB {
	b.Helper()
	db := storetest.Open(b, driver)
	createMany(b, db, benchHosts, 16)
	return db
}

// BenchmarkGetHost reads random hosts by name (what every boot does) from
// 10,000 hosts, serially and from parallel goroutines.
func BenchmarkGetHost(b *testing.B) {
	for _, d := range storetest.Drivers {
		b.Run(d, func(b *testing.B) {
			db := benchDB(b, d)
			b.Run("serial", func(b *testing.B) {
				for b.Loop() {
					if _, err := db.GetHost(ctx, fmt.Sprintf("h%05d", rand.IntN(benchHosts))); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if _, err := db.GetHost(ctx, fmt.Sprintf("h%05d", rand.IntN(benchHosts))); err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("by-mac", func(b *testing.B) {
				for b.Loop() {
					if _, err := db.GetHostByMAC(ctx, macFor(rand.IntN(benchHosts))); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("update", func(b *testing.B) {
				for b.Loop() {
					_, err := db.UpdateHost(ctx, fmt.Sprintf("h%05d", rand.IntN(benchHosts)), func(h *host.Host) ([]host.Record, error) {
						h.Attempt++
						return []host.Record{{Actor: "bench", Reason: "flip"}}, nil
					})
					if err != nil {
						b.Fatal(err)
					}
				}
			})
			b.Run("update-parallel", func(b *testing.B) {
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						_, err := db.UpdateHost(ctx, fmt.Sprintf("h%05d", rand.IntN(benchHosts)), func(h *host.Host) ([]host.Record, error) {
							h.Attempt++
							return []host.Record{{Actor: "bench", Reason: "flip"}}, nil
						})
						if err != nil {
							b.Error(err)
							return
						}
					}
				})
			})
			b.Run("list-all", func(b *testing.B) {
				for b.Loop() {
					hs, err := db.ListHosts(ctx, store.HostFilter{})
					if err != nil || len(hs) != benchHosts {
						b.Fatalf("ListHosts: %d hosts, %v", len(hs), err)
					}
				}
			})
		})
	}
}
