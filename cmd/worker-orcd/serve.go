package main

import (
	"worker-orcd/memwatch"

	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"worker-orcd/backend/cpu"
	"worker-orcd/engine"
	"worker-orcd/server"
)

func init() { register(newServeCmd) }

type serveFlags struct {
	modelFlags
	host, apiKey, workerID       string
	port, queue, batch           int
	logFormat, logLevel          string
	maxBody                      int64
	shutdownTimeout              time.Duration
	readHeaderTimeout, idle      time.Duration
	bodyTimeout, writeTimeout    time.Duration
	maxConns                     int
	allowedHosts, allowedOrigins []string
	pooling                      string
	prefixCache                  bool
	kvMemory                     string
	memInterval                  time.Duration
	memThreshold                 int64
	modelID                      string
}

func newServeCmd() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve [--model M.gguf|REF] [--host 127.0.0.1] [--port 8080]",
		Short: "Serve a model over HTTP: native SSE API, OpenAI-compatible API, health and metrics",
		Long: `Load a GGUF model and serve it over HTTP.

The worker listens first and loads second: GET /health answers 503 "loading"
until the model is ready. Endpoints (see the README): POST /execute (SSE),
POST /cancel, GET /health, GET /metrics; OpenAI's POST /v1/completions,
POST /v1/chat/completions, POST /v1/embeddings, GET /v1/models,
GET /v1/models/{id}; POST /tokenize, POST /detokenize; Ollama's /api/generate,
/api/chat, /api/embed, /api/embeddings, /api/show, /api/tags, /api/ps,
/api/version.

--model takes a file or a reference (hf.co/OWNER/REPO:QUANT, ...), pulled into
the Hugging Face cache on first use while /health says "loading". Without
--model (or WORKER_MODEL) the worker serves ` + DefaultModelRef + `
(about 400 MB, pulled on first use: this needs access to the hub, or the model
already in the cache).

Every flag can also be set in the environment: WORKER_ and the flag's name in
capitals with '_' for '-' (WORKER_PORT=9000, WORKER_PARALLEL=8,
WORKER_ALLOWED_HOSTS=a,b); a flag on the command line wins over the
environment, which wins over the default. Each flag's variable is listed below.

With --api-key every endpoint but /health needs "Authorization: Bearer <key>".
SIGTERM or SIGINT stop accepting requests, let those in flight finish for up to
--shutdown-timeout, cancel the rest, and exit 0.`,
		Args:    cobra.NoArgs,
		PreRunE: func(cmd *cobra.Command, args []string) error { return flagsFromEnv(cmd, "serve") },
		RunE:    func(cmd *cobra.Command, args []string) error { return runServe(cmd, f) },
	}
	fs := cmd.Flags()
	f.modelFlags.add(fs)
	fs.StringVar(&f.host, "host", "127.0.0.1", "address to listen on (0.0.0.0 for every interface)")
	fs.IntVar(&f.port, "port", 8080, "TCP port (0 = any free port; the log says which)")
	fs.IntVar(&f.parallel, "parallel", engine.DefaultParallel, "slots: sequences decoded together (1: on a GPU, decode products of quantized weights use 8-bit kernels, the fastest for a single stream)")
	fs.IntVar(&f.queue, "queue", 64, "requests that may wait for a slot before 503 QUEUE_FULL (at least 1)")
	fs.IntVar(&f.batch, "batch", 0, "tokens per forward step, prompt chunks included (0 = the engine's default)")
	fs.StringVar(&f.apiKey, "api-key", "", "require Authorization: Bearer <key>")
	fs.StringVar(&f.workerID, "worker-id", "", "this worker's name in /health and the logs (default the host name)")
	fs.StringVar(&f.modelID, "model-id", "", "the model's id in /v1/models and responses (default the file name without .gguf)")
	fs.StringVar(&f.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&f.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	fs.Int64Var(&f.maxBody, "max-body", server.DefaultMaxBodyBytes, "largest request body in bytes")
	fs.DurationVar(&f.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGTERM, how long requests in flight may run before they are cancelled")
	fs.DurationVar(&f.readHeaderTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "time a client has to send the request headers")
	fs.DurationVar(&f.idle, "idle-timeout", server.DefaultIdleTimeout, "how long an idle keep-alive connection stays open")
	fs.DurationVar(&f.bodyTimeout, "body-timeout", server.DefaultBodyReadTimeout, "time a client has to send a request body (then 408 and the connection is closed)")
	fs.DurationVar(&f.writeTimeout, "write-timeout", server.DefaultWriteTimeout, "a client that takes no part of a response for this long is dropped (its job is cancelled)")
	fs.BoolVar(&f.prefixCache, "prefix-cache", true, "keep the KV blocks of processed prompts (while --kv-memory allows) and reuse them for any request whose prompt starts with the same tokens, or a running request's prompt rows read so far (same results; --prefix-cache=false reads every prompt whole)")
	fs.StringVar(&f.kvMemory, "kv-memory", "", "bytes all sequences' KV caches may hold together, e.g. 16GiB or 512MB (none: no limit); requests wait for room instead of failing. Default: on a GPU what is free after the weights and workspace less 5% of the card (at least 512 MiB), on the CPU "+cpu.EnvKVBudget+" if set, else 75% of the available memory")
	fs.StringVar(&f.pooling, "pooling", "", "how embeddings pool a text's tokens: mean or last (default: the model's pooling_type, else mean)")
	fs.IntVar(&f.maxConns, "max-connections", server.DefaultMaxConnections, "connections open at once; beyond it new ones wait (logged)")
	fs.StringSliceVar(&f.allowedHosts, "allowed-hosts", nil, "on a loopback --host, further names accepted in the Host header (comma-separated; * for any)")
	fs.StringSliceVar(&f.allowedOrigins, "allowed-origins", nil, "browser origins allowed to call the API, with CORS (e.g. https://app.example; * for any); loopback origins always are")
	fs.DurationVar(&f.memInterval, "mem-check-interval", memwatch.DefaultInterval, "how often the memory self-check samples (resident set on the CPU, VRAM on a GPU)")
	fs.Int64Var(&f.memThreshold, "mem-check-threshold", 512<<20, "growth in bytes above the warmed-up baseline that, while still rising, makes /health unhealthy")
	fs.Lookup("model").Usage = modelHelp + "; default " + DefaultModelRef
	documentEnv(cmd)
	return cmd
}

func (f *serveFlags) newLogger(w io.Writer) (*slog.Logger, error) {
	var level slog.Level
	if err := level.UnmarshalText([]byte(f.logLevel)); err != nil {
		return nil, fmt.Errorf("serve: --log-level %q: want debug, info, warn or error", f.logLevel)
	}
	if globals.verbose && level > slog.LevelDebug {
		level = slog.LevelDebug
	}
	opts := &slog.HandlerOptions{Level: level}
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("serve: --log-format %q: want text or json", f.logFormat)
}

func runServe(cmd *cobra.Command, f *serveFlags) error {
	log, err := f.newLogger(cmd.ErrOrStderr())
	if err != nil {
		return err
	}
	if f.path == "" {
		f.path = DefaultModelRef
		log.Info("no --model or WORKER_MODEL: serving the default model (pulled into the Hugging Face cache on first use)", "model", f.path)
	}
	var pooling engine.Pooling
	if f.pooling != "" { // "" leaves the model's own pooling_type in charge
		if pooling, err = engine.ParsePooling(f.pooling); err != nil {
			return fmt.Errorf("serve: --pooling: %w", err)
		}
	}
	kvMemory, kvSource, err := parseKVMemory(f.kvMemory)
	if err != nil {
		return err
	}
	if f.maxConns < 1 {
		return fmt.Errorf("serve: --max-connections %d: want at least 1", f.maxConns)
	}
	if f.parallel < 1 || f.queue < 1 {
		return fmt.Errorf("serve: --parallel %d and --queue %d: want at least 1 slot and a queue of at least 1", f.parallel, f.queue)
	}
	if f.workerID == "" {
		f.workerID, _ = os.Hostname()
	}
	log = log.With("worker_id", f.workerID)

	srv := server.New(server.Config{APIKey: f.apiKey, WorkerID: f.workerID, ModelID: f.modelID, ModelPath: f.path,
		MaxBodyBytes: f.maxBody, Logger: log, Version: version,
		ReadHeaderTimeout: f.readHeaderTimeout, BodyReadTimeout: f.bodyTimeout, WriteTimeout: f.writeTimeout,
		IdleTimeout: f.idle, MaxConnections: f.maxConns,
		Pooling:      pooling,
		LoopbackOnly: isLoopback(f.host), AllowedHosts: f.allowedHosts, AllowedOrigins: f.allowedOrigins})
	addr := net.JoinHostPort(f.host, strconv.Itoa(f.port))
	ln, err := srv.Listen(addr)
	if err != nil {
		return fmt.Errorf("serve: listen on %s: %w (is another process using the port? try --port)", addr, err)
	}
	hs := srv.HTTPServer()
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "auth", f.apiKey != "")
	if f.apiKey == "" && !isLoopback(f.host) {
		log.Warn("listening beyond this host without an API key: anyone who reaches the port can use the worker (set --api-key or WORKER_API_KEY)", "host", f.host)
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()

	// Load the model while /health answers "loading".
	type loaded struct {
		m   *engine.Model
		err error
	}
	loadDone := make(chan loaded, 1)
	start := time.Now()
	log.Info("loading model", "path", f.path, "device", f.device, "ctx", f.ctx, "parallel", f.parallel, "queue", f.queue)
	go func() {
		o := engine.LoadOptions{Device: f.device, Threads: f.threads, Logger: log, KVType: f.kvType,
			Engine: engine.Options{Parallel: f.parallel, QueueSize: f.queue, CtxLen: f.ctx, BatchTokens: f.batch,
				NoPrefixCache: !f.prefixCache, KVMemory: kvMemory, KVMemorySource: kvSource}}
		path, err := resolveModel(ctx, f.path, cmd.ErrOrStderr())
		if err != nil {
			loadDone <- loaded{nil, err}
			return
		}
		m, err := loadModel(path, o, log)
		if err != nil {
			err = explainFileError(path, err)
		}
		loadDone <- loaded{m, err}
	}()
	var m *engine.Model
	select {
	case l := <-loadDone:
		if l.err != nil {
			srv.SetLoadError(l.err)
			hs.Close()
			return fmt.Errorf("serve: %w", l.err)
		}
		m = l.m
	case <-ctx.Done():
		log.Info("signal while loading: exiting")
		hs.Close()
		return nil
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	}
	defer m.Close()
	srv.SetModel(m)
	// The memory self-check: the process's resident set on the CPU, the
	// device memory the backend holds on a GPU.
	read, what := memwatch.RSS, "rss"
	if m.Backend().Name() != "cpu" {
		read, what = func() int64 {
			x := m.Memory()
			return x.Weights + x.KVCache + x.Activations + x.Workspace
		}, "vram"
	}
	mw := memwatch.New(read, memwatch.Config{Name: what, Interval: f.memInterval, Threshold: f.memThreshold, Logger: log})
	stopWatch := mw.Start(ctx)
	defer stopWatch()
	srv.SetMemWatch(mw)
	// After a burst, give the freed memory back to the OS once idle.
	go srv.ReturnMemoryWhenIdle(ctx, 5*time.Second)
	st := m.Stats()
	mem := m.Backend().Memory()
	log.Info("model loaded", "load_ms", time.Since(start).Milliseconds(), "arch", m.Model.Config.Arch.Name,
		"device", m.Backend().Name(), "slots", st.Slots, "ctx", m.Options().CtxLen, "queue", m.Options().QueueSize,
		"weights_bytes", mem.Weights, "kv_memory_bytes", st.KVMemory, "kv_blocks", st.KVBlocksTotal, "kv_memory_source", st.KVMemorySource)
	log.Info("ready", "addr", ln.Addr().String())

	select {
	case err := <-serveErr:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	stop() // a second signal kills the process the usual way
	log.Info("shutting down: draining requests in flight", "in_flight", srv.InFlight(), "timeout", f.shutdownTimeout.String())
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), f.shutdownTimeout)
	defer cancel()
	// Stop accepting; Shutdown waits for the handlers, streams included.
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("shutdown deadline reached: cancelling requests in flight", "in_flight", srv.InFlight())
		srv.CancelAll()
		wctx, wcancel := context.WithTimeout(context.Background(), 5*time.Second)
		srv.WaitIdle(wctx)
		wcancel()
		// Give the handlers a moment to write their terminal events.
		time.Sleep(50 * time.Millisecond)
		hs.Close()
	}
	log.Info("stopped")
	return nil
}

// loadModel loads the model, logging progress every few seconds while it
// runs (engine.Load reports no finer progress).
func loadModel(path string, o engine.LoadOptions, log *slog.Logger) (*engine.Model, error) {
	done := make(chan struct{})
	defer close(done)
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		start := time.Now()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				log.Info("still loading model", "path", path, "elapsed_s", int(time.Since(start).Seconds()))
			}
		}
	}()
	return engine.Load(path, o)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// parseKVMemory reads --kv-memory for engine.Options: "" is the backend's
// default (0), "none" no limit (-1), else a byte count with an optional
// unit; the source names the flag and its variable.
func parseKVMemory(v string) (int64, string, error) {
	if strings.TrimSpace(v) == "" {
		return 0, "", nil
	}
	n, err := cpu.ParseBytes(v)
	if err != nil {
		return 0, "", fmt.Errorf("serve: --kv-memory %q: %v: want a byte count such as 16GiB, 512MB or 1073741824, or none", v, err)
	}
	src := "set by --kv-memory or " + envName("kv-memory")
	if n == 0 {
		return -1, "no limit (" + src + ")", nil
	}
	return n, src, nil
}
