package main

import "github.com/spf13/cobra"

// newBMCCmd is a placeholder until its owner fills it in.
func newBMCCmd() *cobra.Command { return &cobra.Command{Use: "bmc", Hidden: true} }
