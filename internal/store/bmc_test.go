package store_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/bootpilot/bootpilot/internal/host"
	"github.com/bootpilot/bootpilot/internal/store"
	"github.com/bootpilot/bootpilot/internal/store/storetest"
)

func TestBMC(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		if err := db.SetBMC(ctx, "nobody", store.BMC{URL: "https://x"}, host.Record{}); !errors.Is(err, host.ErrNotFound) {
			t.Fatalf("SetBMC(unknown host) = %v, want ErrNotFound", err)
		}
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		if _, err := db.GetBMC(ctx, "node01"); !errors.Is(err, host.ErrNotFound) {
			t.Fatalf("GetBMC before set = %v, want ErrNotFound", err)
		}
		b := store.BMC{URL: "https://10.0.0.10", Username: "admin", SealedPassword: "sb1.0011223344556677.AAAA",
			CAPEM: "-----BEGIN CERTIFICATE-----\n…", Session: true}
		if err := db.SetBMC(ctx, "node01", b, host.Record{Actor: "admin", Action: "bmc-set"}); err != nil {
			t.Fatal(err)
		}
		got, err := db.GetBMC(ctx, "node01")
		if err != nil {
			t.Fatal(err)
		}
		if got.Host != "node01" || got.URL != b.URL || got.Username != b.Username || got.SealedPassword != b.SealedPassword ||
			got.CAPEM != b.CAPEM || !got.Session || got.Insecure || got.MediaInserted || got.UpdatedAt.IsZero() {
			t.Errorf("GetBMC = %+v, want %+v", got, b)
		}
		// Media state survives a replacement of the endpoint.
		if err := db.SetBMCMedia(ctx, "node01", true, host.Record{Actor: "admin", Action: "redfish-insert"}); err != nil {
			t.Fatal(err)
		}
		b.URL, b.Insecure, b.Session = "https://10.0.0.11:8443", true, false
		if err := db.SetBMC(ctx, "node01", b, host.Record{Actor: "admin", Action: "bmc-set"}); err != nil {
			t.Fatal(err)
		}
		got, _ = db.GetBMC(ctx, "node01")
		if got.URL != b.URL || !got.Insecure || got.Session || !got.MediaInserted || got.MediaSince.IsZero() {
			t.Errorf("after replace GetBMC = %+v", got)
		}
		if err := db.SetBMCMedia(ctx, "node01", false, host.Record{Actor: "system", Action: "redfish-eject"}); err != nil {
			t.Fatal(err)
		}
		if got, _ = db.GetBMC(ctx, "node01"); got.MediaInserted || !got.MediaSince.IsZero() {
			t.Errorf("after eject GetBMC = %+v", got)
		}
		evs, _ := db.Events(ctx, "node01", 0)
		var actions []string
		for _, e := range evs {
			actions = append(actions, e.Action)
		}
		if want := "redfish-eject bmc-set redfish-insert bmc-set create"; strings.Join(actions, " ") != want {
			t.Errorf("event actions = %v, want %s", actions, want)
		}

		// Rotation rewrites every sealed value in one transaction.
		mustCreate(t, db, testHost("node02", "52:54:00:00:00:02"))
		db.SetBMC(ctx, "node02", store.BMC{URL: "https://10.0.0.12", SealedPassword: "old-2"}, host.Record{})
		n, err := db.RotateBMCPasswords(ctx, func(name, sealed string) (string, error) { return "new:" + name, nil })
		if err != nil || n != 2 {
			t.Fatalf("RotateBMCPasswords = %d, %v, want 2", n, err)
		}
		if got, _ := db.GetBMC(ctx, "node02"); got.SealedPassword != "new:node02" {
			t.Errorf("rotated password = %q", got.SealedPassword)
		}
		boom := errors.New("boom")
		if _, err := db.RotateBMCPasswords(ctx, func(name, sealed string) (string, error) {
			if name == "node02" {
				return "", boom
			}
			return "newer", nil
		}); !errors.Is(err, boom) {
			t.Fatalf("failing rotation = %v, want boom", err)
		}
		if got, _ := db.GetBMC(ctx, "node01"); got.SealedPassword != "new:node01" {
			t.Errorf("failed rotation wrote %q", got.SealedPassword)
		}

		if err := db.DeleteBMC(ctx, "node01", host.Record{Actor: "admin", Action: "bmc-delete"}); err != nil {
			t.Fatal(err)
		}
		if err := db.DeleteBMC(ctx, "node01", host.Record{}); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("second DeleteBMC = %v, want ErrNotFound", err)
		}
		if err := db.SetBMCMedia(ctx, "node01", true, host.Record{}); !errors.Is(err, host.ErrNotFound) {
			t.Errorf("SetBMCMedia without BMC = %v, want ErrNotFound", err)
		}
	})
}

// TestBMCInsecurePlaintext: the flag is stored, replaced with the rest of
// the settings, and false for rows that predate migration v3.
func TestBMCInsecurePlaintext(t *testing.T) {
	each(t, func(t *testing.T, db *store.DB) {
		mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
		b := store.BMC{URL: "http://10.0.0.10", Username: "admin", SealedPassword: "sb1.x", InsecurePlaintext: true}
		if err := db.SetBMC(ctx, "node01", b, host.Record{Action: "bmc-set"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.GetBMC(ctx, "node01"); !got.InsecurePlaintext || got.URL != b.URL {
			t.Errorf("GetBMC = %+v, want insecure_plaintext stored", got)
		}
		b.URL, b.InsecurePlaintext = "https://10.0.0.10", false
		if err := db.SetBMC(ctx, "node01", b, host.Record{Action: "bmc-set"}); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.GetBMC(ctx, "node01"); got.InsecurePlaintext {
			t.Errorf("GetBMC after replace = %+v, want insecure_plaintext cleared", got)
		}
	})
}

// TestMigrateV3 upgrades a database whose bmcs table predates v3: the old
// row survives and is not plaintext-allowed.
func TestMigrateV3(t *testing.T) {
	for _, d := range storetest.Drivers {
		t.Run(d, func(t *testing.T) {
			dsn := storetest.DSN(t, d)
			db := storetest.OpenDSN(t, dsn)
			mustCreate(t, db, testHost("node01", "52:54:00:00:00:01"))
			if err := db.SetBMC(ctx, "node01", store.BMC{URL: "http://10.0.0.10", Username: "u", SealedPassword: "s",
				InsecurePlaintext: true}, host.Record{}); err != nil {
				t.Fatal(err)
			}
			db.Close()
			raw := rawOpen(t, d, dsn)
			for _, q := range []string{"ALTER TABLE bmcs DROP COLUMN insecure_plaintext", "DELETE FROM schema_migrations WHERE version = 3"} {
				if _, err := raw.ExecContext(ctx, q); err != nil {
					t.Fatalf("%s: %v", q, err)
				}
			}
			raw.Close()
			db = storetest.OpenDSN(t, dsn)
			if v, err := db.SchemaVersion(ctx); err != nil || v != store.LatestSchema {
				t.Errorf("SchemaVersion after upgrade = %d, %v; want %d", v, err, store.LatestSchema)
			}
			got, err := db.GetBMC(ctx, "node01")
			if err != nil || got.URL != "http://10.0.0.10" || got.InsecurePlaintext {
				t.Errorf("GetBMC after upgrade = %+v, %v; want the old row, insecure_plaintext false", got, err)
			}
		})
	}
}
