package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"worker-orcd/gguf"
	"worker-orcd/quant"
)

func init() { register(newInspectCmd) }

// summaryItems is how many leading elements of a long array inspect shows
// without --full.
const summaryItems = 8

func newInspectCmd() *cobra.Command {
	var asJSON, full, withSHA bool
	var modelFlag string
	cmd := &cobra.Command{
		Use:   "inspect (M.gguf | --model M.gguf|REF)",
		Short: "Print a GGUF file's header, metadata and tensors",
		Long: `Print a GGUF file's version, architecture, metadata (long arrays summarised
unless --full), tensors (name, type, shape, offset, bytes) and totals.
The file is validated first: a damaged file gives a one-line GGUFError and exit status 1.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := modelFlag
			switch {
			case len(args) == 1 && modelFlag != "":
				return fmt.Errorf("inspect: give the model as an argument or as --model, not both")
			case len(args) == 1:
				name = args[0]
			case modelFlag == "":
				return fmt.Errorf("inspect: which model? give a GGUF file (inspect M.gguf) or --model M.gguf|REF")
			}
			path, err := resolveModel(context.Background(), name, cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			f, err := gguf.Open(path)
			if err != nil {
				return explainFileError(path, err)
			}
			defer f.Close()
			rep := buildInspectReport(path, f, full)
			if withSHA {
				sum := sha256.Sum256(f.Bytes())
				rep.SHA256 = hex.EncodeToString(sum[:])
			}
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(rep)
			}
			return printInspectText(out, rep)
		},
	}
	cmd.Flags().StringVar(&modelFlag, "model", "", modelHelp+" (instead of the argument)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print JSON (format in the README)")
	cmd.Flags().BoolVar(&full, "full", false, "print long metadata arrays whole")
	cmd.Flags().BoolVar(&withSHA, "sha256", false, "also print the file's SHA-256")
	return cmd
}

// inspectReport is the JSON document `inspect --json` prints; the README
// documents it field by field.
type inspectReport struct {
	File         string           `json:"file"`
	SizeBytes    int64            `json:"size_bytes"`
	SHA256       string           `json:"sha256,omitempty"`
	Version      uint32           `json:"version"`
	Architecture string           `json:"architecture"`
	Alignment    uint64           `json:"alignment"`
	DataOffset   int64            `json:"data_offset"`
	Metadata     []inspectKV      `json:"metadata"`
	Tensors      []inspectTensor  `json:"tensors"`
	Totals       inspectTotals    `json:"totals"`
	ByType       []inspectTypeSum `json:"by_type"`
}

type inspectKV struct {
	Key       string `json:"key"`
	Type      string `json:"type"`
	Length    *int   `json:"length,omitempty"`    // arrays only
	Truncated bool   `json:"truncated,omitempty"` // value holds only the first items
	Value     any    `json:"value"`
}

type inspectTensor struct {
	Name   string   `json:"name"`
	Type   string   `json:"type"`
	Shape  []uint64 `json:"shape"`
	Offset uint64   `json:"offset"`
	Bytes  uint64   `json:"bytes"`
}

type inspectTotals struct {
	Tensors    int    `json:"tensors"`
	Parameters uint64 `json:"parameters"`
	Bytes      uint64 `json:"bytes"`
}

type inspectTypeSum struct {
	Type     string `json:"type"`
	Tensors  int    `json:"tensors"`
	Elements uint64 `json:"elements"`
	Bytes    uint64 `json:"bytes"`
}

func buildInspectReport(path string, f *gguf.File, full bool) *inspectReport {
	rep := &inspectReport{
		File: path, SizeBytes: f.Size, Version: f.Version, Architecture: f.Architecture(),
		Alignment: f.Alignment, DataOffset: f.DataOffset,
		Metadata: make([]inspectKV, 0, len(f.KV)), Tensors: make([]inspectTensor, 0, len(f.Tensors)),
	}
	for _, kv := range f.KV {
		rep.Metadata = append(rep.Metadata, inspectValue(kv.Key, kv.Value, full))
	}
	sums := map[quant.Type]*inspectTypeSum{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		rep.Tensors = append(rep.Tensors, inspectTensor{Name: t.Name, Type: t.Type.String(), Shape: t.Dims, Offset: t.Offset, Bytes: t.Size})
		s := sums[t.Type]
		if s == nil {
			s = &inspectTypeSum{Type: t.Type.String()}
			sums[t.Type] = s
		}
		s.Tensors++
		s.Elements += t.Elements()
		s.Bytes += t.Size
		rep.Totals.Parameters += t.Elements()
		rep.Totals.Bytes += t.Size
	}
	rep.Totals.Tensors = len(f.Tensors)
	rep.ByType = make([]inspectTypeSum, 0, len(sums))
	for _, s := range sums {
		rep.ByType = append(rep.ByType, *s)
	}
	slices.SortFunc(rep.ByType, func(a, b inspectTypeSum) int {
		if a.Bytes != b.Bytes {
			if a.Bytes > b.Bytes {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Type, b.Type)
	})
	return rep
}

func inspectValue(key string, v gguf.Value, full bool) inspectKV {
	kv := inspectKV{Key: key, Type: v.TypeName()}
	if v.Type != gguf.TypeArray {
		kv.Value = jsonScalar(v.Any())
		return kv
	}
	n := v.Len()
	kv.Length = &n
	shown := n
	if !full && n > summaryItems {
		shown = summaryItems
		kv.Truncated = true
	}
	items := make([]any, shown)
	for i := range shown {
		el := v.Index(i)
		if el.Type == gguf.TypeArray {
			items[i] = inspectValue("", el, full).Value
		} else {
			items[i] = jsonScalar(el.Any())
		}
	}
	kv.Value = items
	return kv
}

// jsonScalar makes a value JSON-encodable: NaN and infinities become the
// strings "NaN", "+Inf", "-Inf".
func jsonScalar(x any) any {
	var f float64
	switch v := x.(type) {
	case float32:
		f = float64(v)
	case float64:
		f = v
	default:
		return x
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Sprint(f)
	}
	return x
}

func printInspectText(w io.Writer, rep *inspectReport) error {
	fmt.Fprintf(w, "file:          %s (%d bytes)\n", rep.File, rep.SizeBytes)
	if rep.SHA256 != "" {
		fmt.Fprintf(w, "sha256:        %s\n", rep.SHA256)
	}
	arch := rep.Architecture
	if arch == "" {
		arch = "(none: no general.architecture key)"
	}
	fmt.Fprintf(w, "format:        GGUF v%d, alignment %d, tensor data at byte %d\n", rep.Version, rep.Alignment, rep.DataOffset)
	fmt.Fprintf(w, "architecture:  %s\n\n", arch)

	fmt.Fprintf(w, "metadata (%d keys):\n", len(rep.Metadata))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, kv := range rep.Metadata {
		val := formatInspectValue(kv.Value)
		if kv.Length != nil {
			val = fmt.Sprintf("[%d] %s", *kv.Length, val)
			if kv.Truncated {
				val += " …"
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", kv.Key, kv.Type, val)
	}
	tw.Flush()

	fmt.Fprintf(w, "\ntensors (%d):\n", len(rep.Tensors))
	tw = tabwriter.NewWriter(w, 0, 4, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "name\ttype\tshape\toffset\tbytes\t\n")
	for _, t := range rep.Tensors {
		fmt.Fprintf(tw, "%s\t%s\t%v\t%d\t%d\t\n", t.Name, t.Type, t.Shape, t.Offset, t.Bytes)
	}
	tw.Flush()

	fmt.Fprintf(w, "\ntotals: %d tensors, %d parameters, %d bytes\n", rep.Totals.Tensors, rep.Totals.Parameters, rep.Totals.Bytes)
	for _, s := range rep.ByType {
		fmt.Fprintf(w, "  %-8s %4d tensors %14d elements %14d bytes\n", s.Type, s.Tensors, s.Elements, s.Bytes)
	}
	return nil
}

func formatInspectValue(v any) string {
	switch x := v.(type) {
	case string:
		if len(x) > 120 {
			return fmt.Sprintf("%q… (%d bytes)", x[:120], len(x))
		}
		return fmt.Sprintf("%q", x)
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = formatInspectValue(e)
		}
		return strings.Join(parts, ", ")
	}
	return fmt.Sprint(v)
}
