package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"worker-orcd/backend"
	"worker-orcd/backend/cpu"
	"worker-orcd/backend/cuda"
	"worker-orcd/engine"
	"worker-orcd/gguf"
	"worker-orcd/hub"
	"worker-orcd/model"
	"worker-orcd/sample"
	"worker-orcd/tokenizer"
)

func init() { register(newDoctorCmd) }

// Check statuses. Only statusFail makes doctor exit 1.
const (
	statusOK   = "ok"
	statusWarn = "warn"
	statusFail = "fail"
	statusSkip = "skip" // the check could not run because an earlier one failed
)

// doctorCheck is one line of the report; its JSON form is documented in
// docs/troubleshooting.md and is stable.
type doctorCheck struct {
	Name    string `json:"name"`
	Status  string `json:"status"`
	Message string `json:"message"`
	Fix     string `json:"fix,omitempty"`
}

// doctorReport is the --json document.
type doctorReport struct {
	Checks []doctorCheck `json:"checks"`
	OK     bool          `json:"ok"`
}

type doctorFlags struct {
	model    string
	device   string
	sha      string
	ctx      int
	parallel int
	cudaLib  string
	noSmoke  bool
	asJSON   bool
	kvMemory string
}

func newDoctorCmd() *cobra.Command {
	f := &doctorFlags{}
	cmd := &cobra.Command{
		Use:   "doctor [--model M.gguf] [--device auto|cpu|cuda[:N]] [--sha256 HEX] [--ctx N] [--json]",
		Short: "Run the troubleshooting checks and print what to fix",
		Long: `Run the troubleshooting checks of docs/troubleshooting.md and print one line per
check: ok, warn or fail, with the fix. The exit status is 0 when no check failed
and 1 otherwise, so doctor can gate a deployment or a CI job.

Checks: the model file (exists, readable, magic bytes, GGUF version, size against
the size its tensor table implies, --sha256), the model (architecture, every
tensor with its shape, tokenizer metadata, vocabulary size against the
embedding rows, context length, memory needed), the GPU (driver, libraries,
device, free VRAM against what the model needs), and a 16-token greedy smoke
generation run twice that must give the same, non-degenerate tokens.

--json prints {"checks":[{"name","status","message","fix"}],"ok":bool}.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return runDoctor(cmd, f) },
	}
	fs := cmd.Flags()
	fs.StringVar(&f.model, "model", "", modelHelp+" (without it, only the GPU is checked)")
	fs.StringVar(&f.device, "device", "auto", "device the worker will use: auto, cpu or cuda[:N]")
	fs.StringVar(&f.sha, "sha256", "", "expected SHA-256 of the model file (hex)")
	fs.IntVar(&f.ctx, "ctx", 0, "context length the worker will run with (0 = the model's)")
	fs.IntVar(&f.parallel, "parallel", 4, "sequences decoded together, as serve's --parallel (each holds a KV cache of --ctx positions)")
	fs.StringVar(&f.cudaLib, "cuda-lib", "", "directory or file of libcuda to try first (default: $WORKER_CUDA_LIB_PATH, then the loader's search)")
	fs.BoolVar(&f.noSmoke, "no-smoke", false, "skip the smoke generation")
	fs.StringVar(&f.kvMemory, "kv-memory", "", "KV memory budget the worker will run with, as serve's --kv-memory (default: $WORKER_KV_MEMORY, else the backend's default)")
	fs.BoolVar(&f.asJSON, "json", false, "print the report as JSON")
	return cmd
}

func runDoctor(cmd *cobra.Command, f *doctorFlags) error {
	if f.parallel < 1 {
		f.parallel = 1
	}
	d := &doctor{flags: f}
	if hub.LooksLikeRef(f.model) {
		// A reference is pulled (or found in the cache) first; the checks
		// then run on the file.
		path, err := resolveModel(context.Background(), f.model, cmd.ErrOrStderr())
		if err != nil {
			d.add("file.pull", statusFail, err.Error(), "check the reference with worker-orcd pull REF (worker-orcd list shows the cached models), HF_TOKEN for a gated repository, or pass a local file")
			f.model = ""
		} else {
			d.add("file.pull", statusOK, fmt.Sprintf("%s is %s", f.model, path), "")
			f.model = path
		}
	}
	d.run()
	rep := doctorReport{Checks: d.checks, OK: true}
	for _, c := range d.checks {
		if c.Status == statusFail {
			rep.OK = false
		}
	}
	out := cmd.OutOrStdout()
	if f.asJSON {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else {
		w := 0
		for _, c := range d.checks {
			w = max(w, len(c.Name))
		}
		for _, c := range d.checks {
			line := fmt.Sprintf("%-4s  %-*s  %s", c.Status, w, c.Name, c.Message)
			if c.Fix != "" {
				line += " -- fix: " + c.Fix
			}
			fmt.Fprintln(out, line)
		}
		nFail, nWarn := 0, 0
		for _, c := range d.checks {
			switch c.Status {
			case statusFail:
				nFail++
			case statusWarn:
				nWarn++
			}
		}
		fmt.Fprintf(out, "doctor: %d checks, %d failed, %d warnings\n", len(d.checks), nFail, nWarn)
	}
	if !rep.OK {
		return &exitError{code: 1, err: errors.New("doctor: some checks failed")}
	}
	return nil
}

// doctor accumulates the checks of one run.
type doctor struct {
	flags  *doctorFlags
	checks []doctorCheck

	// filled as the checks go
	file     *gguf.File
	cfg      *model.Config
	weights  *model.Weights
	tokOK    bool
	gpu      *gpuReport // nil: no GPU found or no probe in this build
	gpuFound bool       // an NVIDIA GPU/driver is present (probe or /proc hint)
}

func (d *doctor) add(name, status, msg, fix string) {
	d.checks = append(d.checks, doctorCheck{Name: name, Status: status, Message: msg, Fix: fix})
}

func (d *doctor) run() {
	if d.flags.model != "" {
		d.fileChecks(d.flags.model)
		if d.file != nil {
			defer d.file.Close()
			d.modelChecks()
		}
	}
	d.gpuCheck()
	if d.flags.model != "" {
		d.memoryCheck()
		d.smokeCheck()
	}
}

// ---- file ----

const fixRedownload = "re-download the model (the transfer was interrupted or the file is corrupt) and compare its SHA-256 with the publisher's (doctor --sha256 HEX)"

func (d *doctor) fileChecks(path string) {
	st, err := os.Stat(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		d.add("file.exists", statusFail, fmt.Sprintf("%s does not exist", path), "check the --model path (relative paths are from the working directory)")
		return
	case err != nil:
		d.add("file.exists", statusFail, err.Error(), "check the --model path and the permissions of its directories")
		return
	case st.IsDir():
		d.add("file.exists", statusFail, fmt.Sprintf("%s is a directory, want a .gguf file", path), "pass the .gguf file inside it (a Hugging Face repo directory holds safetensors; convert it with llama.cpp's convert_hf_to_gguf.py)")
		return
	}
	fh, err := os.Open(path)
	if err != nil {
		d.add("file.exists", statusFail, fmt.Sprintf("%s exists (%d bytes) but cannot be read: %v", path, st.Size(), err), "give the worker's user read permission (chmod a+r, or fix the volume's ownership)")
		return
	}
	defer fh.Close()
	d.add("file.exists", statusOK, fmt.Sprintf("%s: %d bytes (%s), readable", path, st.Size(), humanBytes(st.Size())), "")

	magicOK := d.magicCheck(fh, st.Size())
	if magicOK {
		d.sizeCheck(path, st.Size())
	}
	if d.flags.sha != "" {
		d.shaCheck(fh, d.flags.sha)
	}
	if !magicOK {
		return
	}
	f, err := gguf.Open(path)
	if err != nil {
		fix := "the file is damaged: " + fixRedownload
		if errors.Is(err, gguf.ErrVersion) {
			fix = "re-convert the model with a current llama.cpp convert_hf_to_gguf.py (GGUF v3)"
		}
		d.add("file.gguf", statusFail, err.Error(), fix)
		return
	}
	d.add("file.gguf", statusOK, fmt.Sprintf("GGUF v%d parsed: %d metadata keys, %d tensors, data at offset %d", f.Version, len(f.KV), len(f.Tensors), f.DataOffset), "")
	d.file = f
}

// magicCheck reads the first bytes: the magic and the version (gguf.Sniff
// says what a file that is not GGUF most likely is).
func (d *doctor) magicCheck(fh *os.File, size int64) bool {
	s, err := gguf.Sniff(fh, size)
	if err != nil {
		d.add("file.magic", statusFail, err.Error(), "check the disk and the file's permissions")
		return false
	}
	got := s.Head
	if s.Kind != gguf.KindGGUF {
		magic := got[:min(len(got), 4)]
		msg := fmt.Sprintf("magic bytes [% x] (%q), want 47 47 55 46 (\"GGUF\")", magic, magic)
		d.add("file.magic", statusFail, msg+": "+s.Hint(), "point --model at a .gguf file; "+fixRedownload)
		return false
	}
	d.add("file.magic", statusOK, "magic bytes 47 47 55 46 (\"GGUF\")", "")
	if !s.HasVersion() {
		d.add("file.version", statusFail, fmt.Sprintf("file ends after %d bytes, inside the version field", len(got)), fixRedownload)
		return false
	}
	v := s.Version
	switch gguf.ClassifyVersion(v) {
	case gguf.VersionSupported:
		d.add("file.version", statusOK, fmt.Sprintf("GGUF version %d (supported: 2, 3)", v), "")
		return true
	case gguf.VersionTooOld:
		d.add("file.version", statusFail, fmt.Sprintf("GGUF version %d (supported: 2, 3)", v), "re-convert the model with a current llama.cpp convert_hf_to_gguf.py")
	case gguf.VersionByteSwapped:
		d.add("file.version", statusFail, fmt.Sprintf("version field 0x%08x is byte-swapped: a big-endian GGUF (supported: little-endian v2, v3)", v), "use the little-endian GGUF of the model")
	default:
		d.add("file.version", statusFail, fmt.Sprintf("GGUF version %d (supported: 2, 3)", v), "use a GGUF v2 or v3 file; if the version looks random, "+fixRedownload)
	}
	return false
}

// sizeCheck compares the file size with the size the header implies (read
// with gguf.OpenHeader, which accepts a file cut inside its tensor data).
func (d *doctor) sizeCheck(path string, size int64) {
	hf, err := gguf.OpenHeader(path)
	if err != nil {
		d.add("file.size", statusFail, fmt.Sprintf("file is %d bytes; its header cannot be read to compute the expected size: %v", size, err), fixRedownload)
		return
	}
	defer hf.Close()
	implied, align := hf.ImpliedSize(), int64(hf.Alignment)
	// Writers pad the last tensor to the alignment; allow that.
	padded := (implied + align - 1) / align * align
	switch {
	case size < implied:
		d.add("file.size", statusFail,
			fmt.Sprintf("incomplete download: the file is %d bytes but its tensor table implies %d bytes (data offset %d + %d bytes of tensor data); %.1f%% present, %d bytes missing",
				size, implied, hf.DataOffset, implied-hf.DataOffset, 100*float64(size)/float64(implied), implied-size),
			fixRedownload)
	case size > padded:
		d.add("file.size", statusWarn,
			fmt.Sprintf("the file is %d bytes, %d more than its tensor table implies (%d): trailing data after the last tensor", size, size-padded, implied),
			"check that the file was not appended to or concatenated; compare --sha256 with the publisher's")
	default:
		d.add("file.size", statusOK, fmt.Sprintf("%d bytes, as its header implies (%d tensors, data offset %d)", size, len(hf.Tensors), hf.DataOffset), "")
	}
}

func (d *doctor) shaCheck(fh *os.File, want string) {
	want = strings.ToLower(strings.TrimSpace(want))
	if _, err := hex.DecodeString(want); err != nil || len(want) != 64 {
		d.add("file.sha256", statusFail, fmt.Sprintf("--sha256 %q is not 64 hex digits", want), "pass the SHA-256 from the publisher's model page")
		return
	}
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(fh, 0, 1<<62)); err != nil {
		d.add("file.sha256", statusFail, fmt.Sprintf("reading the file: %v", err), "check the disk and the file's permissions")
		return
	}
	got := hex.EncodeToString(h.Sum(nil))
	if got != want {
		d.add("file.sha256", statusFail, fmt.Sprintf("SHA-256 %s, want %s", got, want), fixRedownload)
		return
	}
	d.add("file.sha256", statusOK, "SHA-256 "+got+" matches", "")
}

// ---- model ----

func (d *doctor) modelChecks() {
	f := d.file
	arch := f.Architecture()
	if _, err := model.LookupArch(arch); err != nil {
		fix := fmt.Sprintf("this worker runs %s; use a GGUF of one of those architectures", strings.Join(model.Supported(), ", "))
		if arch == "" {
			fix = "the file has no general.architecture key: it is not a model GGUF (a vocab-only or adapter file?); " + fix
		}
		d.add("model.architecture", statusFail, err.Error(), fix)
		d.skipModel("the architecture is not supported")
		return
	}
	d.add("model.architecture", statusOK, fmt.Sprintf("%q is supported (%s)", arch, strings.Join(model.Supported(), ", ")), "")

	cfg, err := model.LoadConfig(f)
	if err != nil {
		fix := "the file's hyperparameters are missing or inconsistent: re-convert the model with a current convert_hf_to_gguf.py"
		if errors.Is(err, model.ErrUnsupported) {
			fix = "this variant is not supported by the worker; use a model without it"
		}
		if len(f.Tensors) == 0 {
			fix = "the file holds no tensors: it is a vocab-only GGUF (a tokenizer), not a model; point --model at the model file"
		}
		d.add("model.config", statusFail, err.Error(), fix)
		d.skipModel("the config could not be read")
		return
	}
	d.cfg = &cfg
	d.add("model.config", statusOK, fmt.Sprintf("%d layers, d=%d, ffn=%d, heads %d/%d kv, head_dim %d, rope %s base %g",
		cfg.NLayer, cfg.NEmbd, cfg.NFF, cfg.NHead, cfg.NHeadKV, cfg.HeadDim, cfg.Arch.Rope, cfg.RopeBase), "")

	w, err := model.LoadWeights(f, &cfg)
	if err != nil {
		d.add("model.tensors", statusFail, err.Error(),
			"the file does not hold the tensors this architecture needs (a partial or mislabelled conversion): re-convert or re-download it")
	} else {
		d.weights = w
		tied := ""
		if w.TiedOutput {
			tied = ", output tied to token_embd"
		}
		d.add("model.tensors", statusOK, fmt.Sprintf("all %d tensors present with the expected shapes (%s of weights, %s%s)",
			len(f.Tensors), humanBytes(w.Bytes()), model.QuantKind(f), tied), "")
	}

	d.tokenizerChecks()
	d.contextCheck()
}

func (d *doctor) skipModel(why string) {
	if d.cfg == nil {
		d.add("model.tensors", statusSkip, "not checked: "+why, "")
	}
	d.tokenizerChecks()
	d.add("model.context", statusSkip, "not checked: "+why, "")
}

func (d *doctor) tokenizerChecks() {
	f := d.file
	const fixTok = "the GGUF has no usable tokenizer: re-convert the model from a Hugging Face checkpoint that includes its tokenizer files (tokenizer.json / tokenizer.model), or use the publisher's GGUF"
	var missing []string
	if !f.Has(tokenizer.KeyModel) {
		missing = append(missing, tokenizer.KeyModel)
	}
	if !f.Has(tokenizer.KeyTokens) {
		missing = append(missing, tokenizer.KeyTokens)
	}
	kind, _ := f.String(tokenizer.KeyModel)
	switch kind {
	case string(tokenizer.ModelBPE):
		if !f.Has(tokenizer.KeyMerges) {
			missing = append(missing, tokenizer.KeyMerges)
		}
	case "llama":
		if !f.Has(tokenizer.KeyScores) {
			missing = append(missing, tokenizer.KeyScores)
		}
	}
	if len(missing) > 0 {
		q := make([]string, len(missing))
		for i, k := range missing {
			q[i] = strconv.Quote(k)
		}
		d.add("tokenizer.metadata", statusFail, "TokenizerError: Metadata key not found: "+strings.Join(q, ", "), fixTok)
		d.add("tokenizer.vocab", statusSkip, "not checked: no tokenizer", "")
		return
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		d.add("tokenizer.metadata", statusFail, err.Error(), fixTok)
		d.add("tokenizer.vocab", statusSkip, "not checked: no tokenizer", "")
		return
	}
	pre, _ := f.String(tokenizer.KeyPre)
	d.add("tokenizer.metadata", statusOK, fmt.Sprintf("tokenizer %q (pre %q), %d tokens, BOS %d, EOS %d", kind, pre, tok.VocabSize(), tok.BOS(), tok.EOS()), "")
	if d.cfg == nil {
		d.add("tokenizer.vocab", statusSkip, "not checked: the model config could not be read", "")
		return
	}
	if tok.VocabSize() != d.cfg.VocabSize {
		d.add("tokenizer.vocab", statusFail,
			fmt.Sprintf("the tokenizer has %d tokens but token_embd.weight has %d rows: the tokenizer does not belong to these weights (output would be gibberish)", tok.VocabSize(), d.cfg.VocabSize),
			"use the GGUF the publisher converted with its own tokenizer; do not graft tokenizer.* keys from another model")
		return
	}
	d.tokOK = true
	d.add("tokenizer.vocab", statusOK, fmt.Sprintf("%d tokens = %d embedding rows", tok.VocabSize(), d.cfg.VocabSize), "")
}

func (d *doctor) contextCheck() {
	if d.cfg == nil {
		return
	}
	c := d.cfg.CtxLen
	switch {
	case d.flags.ctx > c:
		d.add("model.context", statusFail,
			fmt.Sprintf("--ctx %d is more than the model's context length %d (%s.context_length)", d.flags.ctx, c, d.cfg.Arch.Name),
			fmt.Sprintf("use --ctx %d or less; requests longer than the context fail with ContextLengthExceeded", c))
	case d.flags.ctx < 0:
		d.add("model.context", statusFail, fmt.Sprintf("--ctx %d is negative", d.flags.ctx), "use --ctx 0 (the model's) or a positive length")
	default:
		run := c
		if d.flags.ctx > 0 {
			run = d.flags.ctx
		}
		d.add("model.context", statusOK, fmt.Sprintf("context %d positions per sequence (model trained for %d); a request whose prompt + max_tokens exceeds it fails with ContextLengthExceeded", run, c), "")
	}
}

// ---- memory ----

// memNeed is what a model needs at a context length.
type memNeed struct {
	weights, kvPerPos, kv, workspace, total int64
	kvElem                                  int64 // bytes a key or value element takes (2: F16, 4: F32)
	ctx                                     int
}

// workspaceBatch is the prompt chunk the workspace estimate assumes (the
// engine's default BatchTokens).
const workspaceBatch = 512

func (d *doctor) need(ctx int) memNeed {
	c := d.cfg
	n := memNeed{ctx: ctx}
	if d.weights != nil {
		n.weights = d.weights.Bytes()
	} else {
		for i := range d.file.Tensors {
			n.weights += int64(d.file.Tensors[i].Size)
		}
	}
	if d.gpuDevice() != nil && d.weights != nil {
		// On a GPU, the backend's own layout (cuda.EstimateMemory): the F16
		// KV cache (the default --kv-type), the step's scratch and the F16
		// weight copies of the cuBLAS prompt path (the LM head alone is
		// 272 MB for Qwen2.5-0.5B).
		mem, err := cuda.EstimateMemory(&model.Model{File: d.file, Config: *c, Weights: d.weights}, ctx, d.flags.parallel, workspaceBatch, "")
		if err == nil {
			n.kvElem = 2
			n.weights, n.kv = mem.Weights, mem.KVCache
			n.kvPerPos = int64(c.NLayer) * 2 * int64(c.KVDim()) * n.kvElem
			n.workspace = mem.Activations + mem.Workspace
			n.total = n.weights + n.kv + n.workspace
			return n
		}
	}
	// On the CPU, the backend's own arithmetic (cpu.EstimateMemory): F32
	// keys and values, the step's scratch for a prompt chunk, the quantized
	// activations, the logits.
	mem := cpu.EstimateMemory(c, d.weights, ctx, d.flags.parallel, workspaceBatch)
	n.kvElem = 4
	n.kvPerPos = int64(c.NLayer) * 2 * int64(c.KVDim()) * n.kvElem
	n.kv = mem.KVCache
	n.workspace = mem.Activations + mem.Workspace
	n.total = n.weights + n.kv + n.workspace
	return n
}

func (d *doctor) ctxToRun() int {
	if d.flags.ctx > 0 && d.flags.ctx <= d.cfg.CtxLen {
		return d.flags.ctx
	}
	return d.cfg.CtxLen
}

func (d *doctor) memoryCheck() {
	if d.cfg == nil {
		d.add("model.memory", statusSkip, "not checked: the model config could not be read", "")
		return
	}
	n := d.need(d.ctxToRun())
	kvType, ws := "F32", "the CPU backend's scratch for a %d-token prompt chunk, its quantized activations and the logits"
	if n.kvElem == 2 {
		kvType, ws = "F16", "the CUDA backend's scratch for a %d-token prompt chunk and the logits, and the F16 weight copies of its prompt path"
	}
	msg := fmt.Sprintf("needs about %s: weights %s + KV cache %s (%s, %d positions x %d sequence(s), %s per position) + workspace %s (estimate: "+ws+")",
		humanBytes(n.total), humanBytes(n.weights), humanBytes(n.kv), kvType, n.ctx, d.flags.parallel, humanBytes(n.kvPerPos), humanBytes(n.workspace), workspaceBatch)
	dev := d.gpuDevice()
	if dev == nil {
		d.hostMemoryCheck(msg, n)
		return
	}
	free := dev.FreeBytes
	fits := d.largestCtx(free)
	switch {
	case n.total <= free:
		status, kv, fix := d.kvBudgetReport(n)
		d.add("model.memory", status, fmt.Sprintf("%s; GPU %d has %s free of %s: fits, largest context that fits %d; %s", msg, dev.Index, humanBytes(free), humanBytes(dev.TotalBytes), fits, kv), fix)
	case fits > 0:
		d.add("model.memory", statusFail, fmt.Sprintf("%s; GPU %d has only %s free of %s: the largest context that fits is %d", msg, dev.Index, humanBytes(free), humanBytes(dev.TotalBytes), fits),
			fmt.Sprintf("run with --ctx %d (or fewer --parallel sequences), free the GPU of other processes (nvidia-smi), or use a smaller quantization (Q4_K_M)", fits))
	default:
		d.add("model.memory", statusFail, fmt.Sprintf("%s; GPU %d has only %s free of %s: the weights and workspace alone do not fit", msg, dev.Index, humanBytes(free), humanBytes(dev.TotalBytes)),
			"use a smaller quantization (Q4_K_M) or a smaller model, free the GPU of other processes (nvidia-smi), or use a GPU with more memory")
	}
}

// kvBudget is the KV memory budget serve would start with: --kv-memory
// (or WORKER_KV_MEMORY), else on the CPU the CPU backend's budget
// (cpu.KVBudgetFromEnvironment), on a GPU what is free after the weights
// and workspace less the margin. 0: no limit.
func (d *doctor) kvBudget(n memNeed) (int64, string, error) {
	v, src := d.flags.kvMemory, "set by --kv-memory"
	if v == "" {
		v, src = os.Getenv(envName("kv-memory")), "set by "+envName("kv-memory")
	}
	if v != "" {
		b, _, err := parseKVMemory(v)
		if err != nil {
			return 0, "", err
		}
		return max(b, 0), src, nil
	}
	if dev := d.gpuDevice(); dev != nil {
		margin := max(int64(float64(dev.TotalBytes)*cuda.KVMemoryMarginShare), cuda.KVMemoryMarginMin)
		return max(dev.FreeBytes-n.weights-n.workspace-margin, 0), fmt.Sprintf("default: GPU %d's free %s less the weights, workspace and a %s margin", dev.Index, humanBytes(dev.FreeBytes), humanBytes(margin)), nil
	}
	return cpu.KVBudgetFromEnvironment()
}

// kvBudgetReport says what the KV memory budget holds against the KV
// caches of --ctx × --parallel, and how to fix a budget too small: a
// status, a message and a fix.
func (d *doctor) kvBudgetReport(n memNeed) (status, msg, fix string) {
	budget, source, err := d.kvBudget(n)
	switch {
	case err != nil:
		return statusFail, err.Error(), "set --kv-memory (WORKER_KV_MEMORY; " + cpu.EnvKVBudget + " on the CPU) to a byte count such as 16GiB (or none), or unset it for the default"
	case budget <= 0:
		return statusOK, "no KV memory budget (" + source + ")", ""
	}
	// The engine counts the budget in the backend's KV blocks.
	blockLen := cpu.KVBlockLen
	if d.gpuDevice() != nil {
		blockLen = cuda.KVBlockLen
	}
	block := int64(blockLen) * n.kvPerPos
	blocks := budget / max(block, 1)
	perSeq := int64((n.ctx + blockLen - 1) / blockLen)
	want := perSeq * int64(d.flags.parallel)
	head := fmt.Sprintf("KV memory budget of %s (%s): %d blocks of %d positions (%s a block)", humanBytes(budget), source, blocks, blockLen, humanBytes(block))
	switch {
	case blocks < 1:
		return statusFail, head + ": not one block fits, the worker will not start", "raise --kv-memory (WORKER_KV_MEMORY) if the machine has the memory, or free memory for the worker"
	case blocks >= want:
		return statusOK, fmt.Sprintf("%s, room for %d positions x %d sequence(s)", head, n.ctx, d.flags.parallel), ""
	}
	fits := int(min(blocks/int64(d.flags.parallel), perSeq)) * blockLen
	msg = fmt.Sprintf("%s, fewer than the %d that %d positions x %d sequence(s) take: requests wait for blocks while others hold them, a sequence that needs a block none can give ends with KVMemoryExceeded, and a prompt longer than %d positions is refused",
		head, want, n.ctx, d.flags.parallel, blocks*int64(blockLen))
	fix = "raise --kv-memory (WORKER_KV_MEMORY) if the machine has the memory, or run fewer --parallel sequences"
	if fits > 0 {
		fix = fmt.Sprintf("run with --ctx %d (or fewer --parallel sequences), or raise --kv-memory (WORKER_KV_MEMORY) if the machine has the memory", fits)
	}
	return statusWarn, msg, fix
}

// hostMemoryCheck reports the KV caches of --ctx × --parallel against the
// KV memory budget on the CPU.
func (d *doctor) hostMemoryCheck(msg string, n memNeed) {
	status, m, fix := d.kvBudgetReport(n)
	d.add("model.memory", status, msg+" of host memory; "+m, fix)
}

// largestCtx is the largest context (per sequence) whose total fits in free
// bytes, at most the model's; 0 when not even one position fits.
func (d *doctor) largestCtx(free int64) int {
	n := d.need(0)
	left := free - n.weights - n.workspace
	per := n.kvPerPos * int64(d.flags.parallel)
	if left < per || per <= 0 {
		return 0
	}
	return int(min(left/per, int64(d.cfg.CtxLen)))
}

// ---- smoke generation ----

const smokeTokens = 16

func (d *doctor) smokeCheck() {
	const name = "smoke.generate"
	switch {
	case d.flags.noSmoke:
		d.add(name, statusSkip, "not run (--no-smoke)", "")
		return
	case d.cfg == nil || d.weights == nil || !d.tokOK:
		d.add(name, statusSkip, "not run: the model checks above failed", "")
		return
	}
	ctx := min(d.ctxToRun(), 256)
	lo := slog.New(slog.NewTextHandler(io.Discard, nil))
	m, err := engine.Load(d.flags.model, engine.LoadOptions{Device: d.flags.device, Logger: lo, CUDALibDir: d.flags.cudaLib,
		Engine: engine.Options{Parallel: 1, CtxLen: ctx}})
	if err != nil {
		d.add(name, statusFail, "loading the model: "+err.Error(), "see the failing checks above; with --device cuda, check the GPU line")
		return
	}
	defer m.Close()
	tok := m.Tokenizer()
	prompt, err := tok.Encode("The capital of France is", tokenizer.EncodeOptions{AddSpecial: true})
	if err != nil || len(prompt) == 0 {
		d.add(name, statusFail, fmt.Sprintf("encoding the smoke prompt: %v", err), "the tokenizer cannot encode plain text: use the publisher's GGUF")
		return
	}
	var runs [2]*engine.Result
	var took [2]time.Duration
	for i := range runs {
		req := engine.Request{Prompt: prompt, Params: sample.GreedyParams(), MaxTokens: smokeTokens, IgnoreEOS: true}
		t0 := time.Now()
		res, err := m.Generate(context.Background(), req, nil)
		took[i] = time.Since(t0)
		if err != nil {
			d.add(name, statusFail, fmt.Sprintf("generation %d failed: %v", i+1, err), "run with -v to see the backend's log; report the error with doctor --json output")
			return
		}
		runs[i] = res
	}
	be := m.Backend().Name()
	ids := runs[1].IDs
	tps := runs[1].Timings.GenerateTPS
	if tps == 0 && took[1] > 0 {
		tps = float64(len(ids)) / took[1].Seconds()
	}
	summary := fmt.Sprintf("%d tokens greedy on %s, %.1f tok/s (%.0f ms for both runs)", len(ids), be, tps, float64((took[0]+took[1]).Microseconds())/1000)
	switch {
	case !slices.Equal(runs[0].IDs, runs[1].IDs):
		d.add(name, statusFail, fmt.Sprintf("%s: two greedy runs differ: %v vs %v", summary, runs[0].IDs, runs[1].IDs),
			"greedy decoding must be deterministic: this is a backend bug (run with --device cpu to compare, and report it)")
	case len(ids) > 1 && allSame(ids):
		d.add(name, statusWarn, fmt.Sprintf("%s: degenerate output, every token is %d %q", summary, ids[0], pieceOf(tok, ids[0])),
			"a real model repeating one token points to broken weights, a wrong RoPE/architecture or a mismatched tokenizer; compare with llama.cpp on the same file")
	default:
		d.add(name, statusOK, fmt.Sprintf("%s, identical twice: %q", summary, runs[1].Text), "")
	}
	if strings.HasPrefix(be, "cpu") && d.gpuFound {
		d.add("smoke.backend", statusWarn, "the CPU backend is in use on a machine with an NVIDIA GPU: generation is much slower than it could be",
			"run with --device cuda to use the GPU (and see the gpu line for why auto did not choose it)")
	}
}

func allSame(ids []int32) bool {
	for _, id := range ids {
		if id != ids[0] {
			return false
		}
	}
	return true
}

func pieceOf(t *tokenizer.Tokenizer, id int32) string {
	s, err := t.Token(id)
	if err != nil {
		return "?"
	}
	return s
}

// humanBytes formats a byte count in binary units.
func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit && exp < 4; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTP"[exp])
}

// ---- GPU ----

// gpuReport mirrors backend/cuda.ProbeResult, so that the checks below do not
// depend on the CUDA package being built in; doctor_gpu.go fills it.
type gpuReport struct {
	Libraries     []gpuLibrary // every load attempt, failed ones included
	DriverVersion int          // as cuDriverGetVersion: 12040 = 12.4
	NVRTCVersion  string       // "" when libnvrtc did not load
	Devices       []gpuDevice
}

type gpuLibrary struct{ Name, Path, Err string }

type gpuDevice struct {
	Index                 int
	Name                  string
	Major, Minor          int
	TotalBytes, FreeBytes int64
}

// gpuProbe loads the NVIDIA driver and lists the devices; nil when this build
// has no CUDA backend. doctor_gpu.go sets it. With an error, a report that
// lists devices means the driver loaded but a later library (NVRTC) did not.
var gpuProbe func(libPath string) (*gpuReport, error)

// nvidiaDriverHint says whether an NVIDIA kernel driver is visible without
// loading any library (used when no probe is built in).
var nvidiaDriverHint = func() (string, bool) {
	b, err := os.ReadFile("/proc/driver/nvidia/version")
	if err != nil {
		return "", false
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(line), true
}

// wantsCUDA reports whether --device demands a GPU, and which one (read
// by backend.ParseDevice, as the engine reads it; a value it cannot read
// demands nothing: gpuCheck reports it).
func (d *doctor) wantsCUDA() (bool, int) {
	dev, err := backend.ParseDevice(d.flags.device)
	return err == nil && dev.Kind == backend.DeviceCUDA, dev.Index
}

func (d *doctor) gpuDevice() *gpuDevice {
	if d.gpu == nil || len(d.gpu.Devices) == 0 {
		return nil
	}
	_, idx := d.wantsCUDA()
	for i := range d.gpu.Devices {
		if d.gpu.Devices[i].Index == idx {
			return &d.gpu.Devices[i]
		}
	}
	return &d.gpu.Devices[0]
}

func (d *doctor) gpuCheck() {
	const name = "gpu"
	want, err := backend.ParseDevice(d.flags.device)
	if err != nil {
		d.add(name, statusFail, "--device: "+err.Error(), "use --device auto, cpu or cuda[:N] (N a GPU index from nvidia-smi)")
		return
	}
	demanded, idx := d.wantsCUDA()
	if want.Kind == backend.DeviceCPU {
		have := ""
		if gpuProbe != nil {
			if rep, err := gpuProbe(d.flags.cudaLib); err == nil && rep != nil && len(rep.Devices) > 0 {
				have = fmt.Sprintf("GPU %d %q", rep.Devices[0].Index, rep.Devices[0].Name)
			}
		}
		if hint, ok := nvidiaDriverHint(); ok && have == "" {
			have = "an NVIDIA driver (" + hint + ")"
		}
		if have != "" {
			d.gpuFound = true
			d.add(name, statusWarn, "--device cpu on a machine with "+have+": generation will run on the CPU", "drop --device cpu (or use --device cuda) to run on the GPU")
		} else {
			d.add(name, statusOK, "--device cpu: the GPU is not used", "")
		}
		return
	}
	noGPU, fallback := statusWarn, "generation will run on the CPU"
	noGPUFix := "to use a GPU: install the NVIDIA driver (and, in a container, the NVIDIA container toolkit with --gpus all), or point WORKER_CUDA_LIB_PATH at the directory of libcuda.so.1"
	if demanded {
		noGPU, fallback = statusFail, "--device "+d.flags.device+" cannot run"
		noGPUFix = "--device " + d.flags.device + " was demanded: " + noGPUFix + "; or run with --device auto to fall back to the CPU"
	}
	if gpuProbe == nil {
		msg := "this build has no CUDA backend: " + fallback
		if hint, ok := nvidiaDriverHint(); ok {
			d.gpuFound = true
			msg = "an NVIDIA driver is present (" + hint + ") but " + msg
		}
		d.add(name, noGPU, msg, "use a worker-orcd build with the CUDA backend to use the GPU")
		return
	}
	lib := d.flags.cudaLib
	if lib == "" {
		lib = os.Getenv("WORKER_CUDA_LIB_PATH")
	}
	rep, err := gpuProbe(lib)
	if err != nil && (rep == nil || len(rep.Devices) == 0) {
		d.add(name, noGPU, fmt.Sprintf("no NVIDIA GPU/driver found (%v): %s", err, fallback), noGPUFix)
		return
	}
	if len(rep.Devices) == 0 {
		d.add(name, noGPU, fmt.Sprintf("the NVIDIA driver %s loaded but reports no device: %s", driverString(rep.DriverVersion), fallback),
			"check nvidia-smi; in a container, request a GPU (nvidia.com/gpu: 1, or docker --gpus all)")
		return
	}
	d.gpu = rep
	d.gpuFound = true
	dev := d.gpuDevice()
	if demanded && dev.Index != idx {
		d.add(name, statusFail, fmt.Sprintf("--device %s: there is no GPU %d (%d device(s): 0..%d)", d.flags.device, idx, len(rep.Devices), len(rep.Devices)-1),
			"use an index that nvidia-smi lists (CUDA_VISIBLE_DEVICES renumbers them from 0)")
		d.gpu = nil
		return
	}
	var libs []string
	for _, l := range rep.Libraries {
		if l.Err == "" {
			libs = append(libs, l.Path)
		}
	}
	nvrtc := ""
	if rep.NVRTCVersion != "" {
		nvrtc = ", NVRTC " + rep.NVRTCVersion
	}
	msg := fmt.Sprintf("driver %s%s, loaded %s; GPU %d %q, compute capability %d.%d (sm_%d%d), %s free of %s",
		driverString(rep.DriverVersion), nvrtc, strings.Join(libs, ", "), dev.Index, dev.Name, dev.Major, dev.Minor, dev.Major, dev.Minor,
		humanBytes(dev.FreeBytes), humanBytes(dev.TotalBytes))
	if err != nil {
		st := statusWarn
		if demanded {
			st = statusFail
		}
		d.add(name, st, msg+"; but "+err.Error(),
			"install the CUDA runtime libraries (libnvrtc, libcublas: the nvidia/cuda runtime image has them) or set WORKER_CUDA_LIB_PATH to their directory")
		return
	}
	if dev.Major < 6 {
		d.add(name, statusWarn, msg+": compute capability below 6.0 is not tested", "use a Pascal (sm_60) or newer GPU")
		return
	}
	d.add(name, statusOK, msg, "")
}

func driverString(v int) string {
	if v <= 0 {
		return "(unknown version)"
	}
	return fmt.Sprintf("%d.%d", v/1000, v%1000/10)
}
