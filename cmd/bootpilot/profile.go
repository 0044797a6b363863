package main

import "github.com/spf13/cobra"

// newProfileCmd is a placeholder until its owner fills it in.
func newProfileCmd() *cobra.Command { return &cobra.Command{Use: "profile", Hidden: true} }
