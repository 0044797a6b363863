package main

import (
	"fmt"
	"io"
	"os"

	"github.com/spf13/cobra"

	"github.com/bootpilot/bootpilot/internal/client"
)

func newImageCmd() *cobra.Command {
	f := &clientFlags{}
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Put kernels, initrds and disk images into the server's image cache",
		Long: "The server serves cached blobs to hosts by digest at /images/v1/<sha256>, with Range and ETag.\n" +
			"Use the printed URL in a profile's --kernel/--initrd/--image.\n\n" + cliConnectionHelp,
	}
	f.register(cmd)
	var sha string
	fetch := &cobra.Command{
		Use:   "fetch REF --sha256 HEX",
		Short: "Make the server fetch an https URL or OCI artifact (registry/repo@sha256:… or :tag), verified",
		Long: "Make the server fetch REF into its cache, verified against --sha256 (required but for OCI references).\n" +
			"The server fetches only from the origins its --image-origin allows, never from private addresses\n" +
			"unless started with --image-allow-private, and reads local paths only below its --image-import-dir.\n" +
			"To put a file from this machine into the cache, use: bootpilot image add FILE",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			img, err := c.FetchImage(cmd.Context(), args[0], sha)
			if err != nil {
				return fmt.Errorf("image fetch: %w", err)
			}
			return printImage(cmd.OutOrStdout(), f, img)
		},
	}
	fetch.Flags().StringVar(&sha, "sha256", "", "expected sha256 of the blob (hex)")
	add := &cobra.Command{
		Use:   "add FILE",
		Short: "Upload a local file (kernel, initramfs, disk image) into the server's cache",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := f.client()
			if err != nil {
				return err
			}
			fh, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer fh.Close()
			img, err := c.UploadImage(cmd.Context(), fh)
			if err != nil {
				return fmt.Errorf("image add %s: %w", args[0], err)
			}
			return printImage(cmd.OutOrStdout(), f, img)
		},
	}
	cmd.AddCommand(add, fetch)
	return cmd
}

func printImage(w io.Writer, f *clientFlags, img client.Image) error {
	if asJSON, err := f.json(); err != nil || asJSON {
		if err != nil {
			return err
		}
		return cliJSON(w, img)
	}
	_, err := fmt.Fprintf(w, "Digest: %s\nSize:   %d\nURL:    %s\n", img.Digest, img.Size, img.URL)
	return err
}
