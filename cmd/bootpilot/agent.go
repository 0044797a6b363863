package main

import "github.com/spf13/cobra"

// newAgentCmd is a placeholder until its owner fills it in.
func newAgentCmd() *cobra.Command { return &cobra.Command{Use: "agent", Hidden: true} }
