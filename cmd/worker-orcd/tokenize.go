package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"

	"github.com/spf13/cobra"

	"worker-orcd/tokenizer"
)

func init() { register(newTokenizeCmd) }

func newTokenizeCmd() *cobra.Command {
	var model string
	var asJSON, noSpecial, parseSpecial bool
	cmd := &cobra.Command{
		Use:   "tokenize --model M.gguf [TEXT]",
		Short: "Print the token ids of a text (standard input when no TEXT)",
		Long: `Print the token ids and pieces of TEXT, or of standard input read whole
(a trailing newline included) when TEXT is absent, as the model's tokenizer
encodes it.

BOS/EOS are added as the model asks (tokenizer.ggml.add_bos_token /
add_eos_token) unless --no-special. Special-token text such as <|im_start|>
is encoded as plain text unless --parse-special.

Text output: one token a line, the id and the piece as a Go-quoted string.
--json prints {"ids":[...],"pieces":[...]}: each piece is a string, or a list
of byte values when the token's bytes are not valid UTF-8 on their own (a
character split over byte tokens).`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if model == "" {
				return fmt.Errorf("tokenize: --model is required (a GGUF file with tokenizer metadata)")
			}
			var text string
			if len(args) == 1 {
				text = args[0]
			} else {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return fmt.Errorf("tokenize: reading standard input: %w", err)
				}
				text = string(b)
			}
			path, err := resolveModel(context.Background(), model, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			tok, err := tokenizer.Load(path)
			if err != nil {
				return explainFileError(path, err)
			}
			ids, err := tok.Encode(text, tokenizer.EncodeOptions{AddSpecial: !noSpecial, ParseSpecial: parseSpecial})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if asJSON {
				return writeTokensJSON(out, tok, ids)
			}
			for _, id := range ids {
				p, _ := tok.Piece(id)
				fmt.Fprintf(out, "%d\t%s\n", id, strconv.Quote(string(p)))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&model, "model", "", "GGUF model whose tokenizer to use: a file or a reference (hf.co/OWNER/REPO:QUANT, ...)")
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"ids":[...],"pieces":[...]}`)
	cmd.Flags().BoolVar(&noSpecial, "no-special", false, "add no BOS/EOS")
	cmd.Flags().BoolVar(&parseSpecial, "parse-special", false, "recognise special-token text such as <|im_start|>")
	return cmd
}

// tokensJSON is the stable --json format of tokenize.
type tokensJSON struct {
	IDs    []int32 `json:"ids"`
	Pieces []any   `json:"pieces"` // string, or []int of byte values when not valid UTF-8
}

func writeTokensJSON(w io.Writer, tok *tokenizer.Tokenizer, ids []int32) error {
	r := tokensJSON{IDs: ids, Pieces: make([]any, len(ids))}
	if r.IDs == nil {
		r.IDs = []int32{}
	}
	for i, id := range ids {
		p, err := tok.Piece(id)
		if err != nil {
			return err
		}
		if utf8.Valid(p) {
			r.Pieces[i] = string(p)
			continue
		}
		vals := make([]int, len(p))
		for j, b := range p {
			vals[j] = int(b)
		}
		r.Pieces[i] = vals
	}
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	return enc.Encode(r)
}
