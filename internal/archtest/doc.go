// Package archtest holds no code: its tests enforce the package map of
// DESIGN §6 (dependency direction, which package may import gorm or gofish)
// and that every package documents itself.
package archtest
