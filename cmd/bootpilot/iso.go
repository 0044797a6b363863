package main

import "github.com/spf13/cobra"

// newISOCmd is a placeholder until its owner fills it in.
func newISOCmd() *cobra.Command { return &cobra.Command{Use: "iso", Hidden: true} }
