package store

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/bootpilot/bootpilot/internal/host"
	"gorm.io/gorm"
)

// cloneLabels copies l; no labels become nil, as hosts read back.
func cloneLabels(l host.Labels) host.Labels {
	if len(l) == 0 {
		return nil
	}
	return maps.Clone(l)
}

// insertLabels adds name's labels to host_labels.
func insertLabels(tx *gorm.DB, name string, l host.Labels) error {
	if len(l) == 0 {
		return nil
	}
	rows := make([]hostLabelRow, 0, len(l))
	for _, k := range slices.Sorted(maps.Keys(l)) {
		rows = append(rows, hostLabelRow{HostName: name, LabelKey: k, LabelValue: l[k]})
	}
	if err := dbErr(tx.Create(&rows).Error); err != nil {
		return fmt.Errorf("store: host %s: add labels: %w", name, err)
	}
	return nil
}

// scopeWhere keeps the rows of table t (hosts) that match at least one
// scope: every key=value of the scope is a host_labels row of the host. Each
// equality is an EXISTS probe on host_labels' primary key (host, key), so a
// list walked in name order with a limit stops after one page. An empty
// scope matches every host and adds no condition.
func scopeWhere(q *gorm.DB, t string, scopes []map[string]string) *gorm.DB {
	var ors []string
	var args []any
	for _, sc := range scopes {
		if len(sc) == 0 {
			return q
		}
		var ands []string
		for _, k := range slices.Sorted(maps.Keys(sc)) {
			ands = append(ands, "EXISTS (SELECT 1 FROM host_labels hl WHERE hl.host_name = "+t+".name AND hl.label_key = ? AND hl.label_value = ?)")
			args = append(args, k, sc[k])
		}
		ors = append(ors, "("+strings.Join(ands, " AND ")+")")
	}
	return q.Where("("+strings.Join(ors, " OR ")+")", args...)
}
