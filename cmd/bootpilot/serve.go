package main

import "github.com/spf13/cobra"

// newServeCmd is a placeholder until its owner fills it in.
func newServeCmd() *cobra.Command { return &cobra.Command{Use: "serve", Hidden: true} }
