package main

import "github.com/spf13/cobra"

// newHostCmd is a placeholder until its owner fills it in.
func newHostCmd() *cobra.Command { return &cobra.Command{Use: "host", Hidden: true} }
