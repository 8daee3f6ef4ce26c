package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"worker-orcd/engine"
	"worker-orcd/tokenizer"
)

func init() { register(newScoreCmd) }

// scoreJSON is what `score --json` prints; the README documents it.
type scoreJSON struct {
	IDs        []int32         `json:"ids"`
	Positions  []scorePosition `json:"positions"`
	Perplexity float64         `json:"perplexity"`
}

type scorePosition struct {
	I       int             `json:"i"`
	ID      int32           `json:"id"`
	Logprob float32         `json:"logprob"`
	Top     []candidateJSON `json:"top,omitempty"`
}

func newScoreCmd() *cobra.Command {
	var mf modelFlags
	var textFile, idList string
	var topK int
	var asJSON bool
	var logitsOut string
	cmd := &cobra.Command{
		Use:   "score --model M.gguf (--text-file F | --ids 1,2,3)",
		Short: "Teacher-forced log-probabilities and perplexity of a token sequence",
		Long: `For each position i ≥ 1, print the log-probability of token i given tokens
0..i-1, and the most likely alternatives there (--top-logprobs K), plus the
perplexity of the whole sequence. --text-file is tokenized as generate does
(BOS added when the model asks for it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if (textFile == "") == (idList == "") {
				return errors.New("score: give exactly one of --text-file F or --ids 1,2,3")
			}
			var ids []int32
			if idList != "" {
				var err error
				if ids, err = parseIDs("score: --ids", idList); err != nil {
					return err
				}
			}
			var rows [][]float32
			mf.stderr = cmd.ErrOrStderr()
			m, err := mf.load("score", func(o *engine.LoadOptions) {
				if logitsOut != "" {
					o.Logits = func(r []float32) { rows = append(rows, r) }
				}
			})
			if err != nil {
				return err
			}
			defer m.Close()
			if textFile != "" {
				b, err := os.ReadFile(textFile)
				if err != nil {
					return fmt.Errorf("score: --text-file: %w", err)
				}
				if ids, err = m.Tokenizer().Encode(string(b), tokenizer.EncodeOptions{AddSpecial: true}); err != nil {
					return err
				}
			}
			res, err := m.Score(context.Background(), ids, topK)
			if err != nil {
				return err
			}
			if logitsOut != "" {
				flat := make([]float32, 0, len(rows)*len(rows[0]))
				for _, r := range rows {
					flat = append(flat, r...)
				}
				if err := writeNPY(logitsOut, len(rows), len(rows[0]), flat); err != nil {
					return fmt.Errorf("score: --logits-out: %w", err)
				}
			}
			doc := scoreJSON{IDs: res.IDs, Perplexity: res.Perplexity, Positions: make([]scorePosition, len(res.Positions))}
			for i, p := range res.Positions {
				doc.Positions[i] = scorePosition{I: p.I, ID: p.ID, Logprob: p.Logprob, Top: candidates(p.Top)}
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetEscapeHTML(false)
				return enc.Encode(doc)
			}
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "i\tid\tpiece\tlogprob\ttop")
			for _, p := range doc.Positions {
				piece, _ := m.Tokenizer().Piece(p.ID)
				top := make([]string, len(p.Top))
				for j, c := range p.Top {
					top[j] = fmt.Sprintf("%d:%.3f", c.ID, c.Logprob)
				}
				fmt.Fprintf(tw, "%d\t%d\t%q\t%.4f\t%s\n", p.I, p.ID, piece, p.Logprob, strings.Join(top, " "))
			}
			tw.Flush()
			fmt.Fprintf(out, "perplexity: %.4f over %d positions\n", doc.Perplexity, len(doc.Positions))
			return nil
		},
	}
	fs := cmd.Flags()
	mf.add(fs)
	fs.StringVar(&textFile, "text-file", "", "text to score")
	fs.StringVar(&idList, "ids", "", "comma-separated token ids to score")
	fs.IntVar(&topK, "top-logprobs", 0, "alternatives to report per position (0 to 20)")
	fs.BoolVar(&asJSON, "json", false, "print JSON (format in the README)")
	fs.StringVar(&logitsOut, "logits-out", "", "also write the raw logits of every scored position (row i predicts ids[i+1]) as a .npy file")
	return cmd
}

// parseIDs parses a comma-separated list of token ids.
func parseIDs(what, list string) ([]int32, error) {
	var ids []int32
	for i, s := range strings.Split(list, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 32)
		if err != nil {
			return nil, fmt.Errorf("%s element %d (%q) is not an integer token id", what, i, s)
		}
		ids = append(ids, int32(n))
	}
	return ids, nil
}
