package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"worker-orcd/gguf"
	"worker-orcd/hub"
	"worker-orcd/model"
)

func init() {
	register(newPullCmd)
	register(newListCmd)
	register(newRmCmd)
}

const refForms = `REF is one of
  hf.co/OWNER/REPO:QUANT        the repository's GGUF file of that quantization (Q4_K_M, Q8_0, ...)
  hf.co/OWNER/REPO              its only GGUF model, else its Q4_K_M one
  hf.co/OWNER/REPO/FILE.gguf    that file (a path inside the repository)
  hf.co/OWNER/REPO@REV...       at a branch, tag or commit (default main)
  https://HOST/.../NAME.gguf    a URL (a hub /resolve/ URL counts as hf.co/...)

Files go into the Hugging Face hub cache (HF_HUB_CACHE, else HF_HOME/hub, else
~/.cache/huggingface/hub), shared with the hub's own tools. HF_TOKEN (or the
token file of "huggingface-cli login") is sent for gated and private
repositories; HF_ENDPOINT names a mirror; --offline or HF_HUB_OFFLINE=1 use
the cache only.`

func newPullCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "pull REF",
		Short: "Download a model into the Hugging Face cache (resumable, SHA-256 verified)",
		Long: `Download a GGUF model by reference into the Hugging Face hub cache.

` + refForms + `

A progress bar shows on a terminal (a line every few seconds otherwise). An
interrupted pull resumes where it stopped; a dropped connection is resumed a
few times before the pull fails. Each file is checked against the SHA-256 the
hub publishes and refused (deleted) when it differs. A split model
(NAME-00001-of-0000N.gguf) is pulled part by part and loaded as one model.
Every command's --model accepts a REF too and pulls it on first use.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			r, err := hub.ParseRef(args[0])
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
			defer stop()
			m, err := newHubClient(cmd.ErrOrStderr()).Pull(ctx, r)
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return fmt.Errorf("pull: interrupted: the bytes downloaded are kept and the next pull of %s resumes from them", r)
				}
				return err
			}
			out := cmd.OutOrStdout()
			for _, p := range m.Paths {
				fmt.Fprintln(out, p)
			}
			return nil
		},
	}
}

// listEntry is a line of `list --json`.
type listEntry struct {
	Ref    string   `json:"ref"`
	Type   string   `json:"type"`
	Size   int64    `json:"size_bytes"`
	Path   string   `json:"path"`
	Parts  []string `json:"parts,omitempty"`
	Commit string   `json:"commit"`
}

func newListCmd() *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:     "list",
		Aliases: []string{"ls"},
		Short:   "List the GGUF models in the Hugging Face cache (ref, type, size, path)",
		Long: `List the GGUF models in the Hugging Face hub cache (HF_HUB_CACHE, else
HF_HOME/hub, else ~/.cache/huggingface/hub): a reference that names each (for
--model and rm), its quantization type (from the file's header), its size and
its path. --json prints [{"ref","type","size_bytes","path","parts","commit"}].`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			c := hub.Cache{Dir: hub.DefaultCacheDir()}
			entries, err := c.List()
			if err != nil {
				return fmt.Errorf("list: %w", err)
			}
			rows := make([]listEntry, 0, len(entries))
			for _, e := range entries {
				row := listEntry{Ref: e.Ref.String(), Type: fileType(e.Path()), Size: e.Size, Path: e.Path(), Commit: e.Commit}
				if len(e.Paths) > 1 {
					row.Parts = e.Paths
				}
				rows = append(rows, row)
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(rows)
			}
			if len(rows) == 0 {
				fmt.Fprintf(out, "no models in %s (worker-orcd pull REF adds one)\n", c.Dir)
				return nil
			}
			tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "REF\tTYPE\tSIZE\tPATH")
			for _, r := range rows {
				path := r.Path
				switch len(r.Parts) {
				case 0, 1:
				case 2:
					path += " (+1 part)"
				default:
					path += fmt.Sprintf(" (+%d parts)", len(r.Parts)-1)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Ref, r.Type, humanBytes(r.Size), path)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	return cmd
}

// fileType is a cached file's quantization mix as its header says ("?" when
// the header cannot be read).
func fileType(path string) string {
	f, err := gguf.OpenHeader(path)
	if err != nil {
		return "?"
	}
	defer f.Close()
	if k := model.QuantKind(f); k != "" {
		return k
	}
	return "?"
}

func newRmCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "rm REF...",
		Aliases: []string{"remove"},
		Short:   "Remove models from the Hugging Face cache",
		Long: `Remove models from the Hugging Face hub cache: their snapshot links, the
blobs no other snapshot uses, the repository's folder once empty, and the
joined copy of a split model. REF is
as for pull, or a ref that worker-orcd list prints.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c := hub.Cache{Dir: hub.DefaultCacheDir()}
			for _, a := range args {
				r, err := hub.ParseRef(a)
				if err != nil {
					return err
				}
				m, _ := c.Local(r)
				removed, err := c.Remove(r)
				if err != nil {
					return err
				}
				if m != nil && len(m.Paths) > 1 { // the joined copy of a split model
					if os.Remove(joinedPath(m)) == nil {
						removed = append(removed, joinedPath(m))
					}
				}
				fmt.Fprintf(cmd.OutOrStdout(), "removed %s (%d files)\n", r, len(removed))
			}
			return nil
		},
	}
}
