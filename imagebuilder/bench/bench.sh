#!/bin/sh
# bench.sh — ISOs per second for N hosts (default 1000) with `bootpilot iso
# build`, against the baseline pipeline (patch, sbsign, mtools, xorriso per
# host) measured in the same run. Run from the repository root:
#   sh imagebuilder/bench/bench.sh [N]
# Needs: go, openssl, sbsign, mtools, xorriso; /usr/bin/time for peak memory.
set -eu
N=${1:-1000}
BASE_N=${BASE_N:-20}
JOBS=${JOBS:-$(nproc)}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
trap 'exit 1' HUP INT PIPE TERM # so the EXIT trap runs then too

go build -o "$work/bootpilot" ./cmd/bootpilot
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-ca -keyout "$work/ca.key" -out "$work/ca.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=bench-db -keyout "$work/db.key" -out "$work/db.pem" 2>/dev/null
awk -v n="$N" 'BEGIN {
	print "name,mac,ipv4,gateway,dns"
	for (i = 0; i < n; i++) {
		a = i + 256 # unique addresses from 10.0.1.0 on; 10.0.0.1/.2 are gateway and DNS
		printf "node%05d,52:54:00:%02x:%02x:%02x,10.%d.%d.%d/8,10.0.0.1,10.0.0.2\n", i,
			int(i / 65536) % 256, int(i / 256) % 256, i % 256, int(a / 65536) % 256, int(a / 256) % 256, a % 256
	}
}' >"$work/hosts.csv"

timer=""
[ -x /usr/bin/time ] && timer="/usr/bin/time -f %M"
start=$(date +%s.%N)
$timer "$work/bootpilot" iso build --csv "$work/hosts.csv" --out "$work/out" --server-url https://boot.example.org \
	--ca-cert "$work/ca.pem" --db-key "$work/db.key" --db-cert "$work/db.pem" --offline --jobs "$JOBS" 2>"$work/time"
end=$(date +%s.%N)
ours=$(echo "$N / ($end - $start)" | bc -l)
built=$(ls "$work/out"/*.iso | wc -l)

base=$(go test ./imagebuilder -run '^$' -bench BenchmarkBaselineSbsignXorriso -benchtime "${BASE_N}x" |
	awk '/isos\/s/ {for (i = 1; i < NF; i++) if ($(i+1) == "isos/s") print $i}')
printf 'bootpilot iso build: %d ISOs in %.2f s = %.1f ISOs/s (jobs %s)\n' "$built" "$(echo "$end - $start" | bc -l)" "$ours" "$JOBS"
[ -n "$timer" ] && printf 'peak RSS: %s KiB\n' "$(tail -1 "$work/time")"
printf 'baseline (patch + sbsign + mtools + xorriso per host, %d hosts): %.2f ISOs/s\n' "$BASE_N" "$base"
printf 'ratio: %.1fx\n' "$(echo "$ours / $base" | bc -l)"
