package main

import "github.com/spf13/cobra"

// newVersionCmd is a placeholder until its owner fills it in.
func newVersionCmd() *cobra.Command { return &cobra.Command{Use: "version", Hidden: true} }
