package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"worker-orcd/backend"
	"worker-orcd/engine"
)

// Error codes of the HTTP family (DESIGN.md §5). The first six are the
// design's; the others name the HTTP-level failures the table leaves out.
const (
	CodeInvalidRequest       = "INVALID_REQUEST"   // 400 (413 for a body over the limit, 409 for a job_id in use)
	CodeVRAMOOM              = "VRAM_OOM"          // 507: the device ran out of memory
	CodeCancelled            = "CANCELLED"         // the job was cancelled (/cancel, shutdown)
	CodeInferenceTimeout     = "INFERENCE_TIMEOUT" // reserved: a job ran past its deadline
	CodeCUDAError            = "CUDA_ERROR"        // reserved: a CUDA call failed
	CodeInternal             = "INTERNAL"          // 500: anything else
	CodeQueueFull            = "QUEUE_FULL"        // 503 + Retry-After: every slot busy and the queue full
	CodeLoading              = "MODEL_LOADING"     // 503 + Retry-After: the model is still loading
	CodeShuttingDown         = "SHUTTING_DOWN"     // 503: the worker is draining before exit
	CodeUnauthorized         = "UNAUTHORIZED"      // 401: missing or wrong bearer token
	CodeNotFound             = "NOT_FOUND"         // 404: no such endpoint
	CodeMethodNotAllowed     = "METHOD_NOT_ALLOWED"
	CodeForbidden            = "FORBIDDEN"              // 403: a Host or Origin this worker does not serve
	CodeUnsupportedMediaType = "UNSUPPORTED_MEDIA_TYPE" // 415: a POST body not sent as application/json
	CodeUnsupported          = "UNSUPPORTED_OPERATION"  // 501: the backend cannot do it (embeddings on a backend without them)
)

// apiError is an error answered to a client. It renders in the native shape
// {"code","message","retriable"} or in OpenAI's {"error":{...}}.
type apiError struct {
	Status    int
	Code      string // native code (CodeInvalidRequest, …)
	Message   string
	Param     string // the request field at fault, if any
	Retriable bool
	OAIType   string // OpenAI error type; "" derives it from Status
	OAICode   string // OpenAI error code; "" derives it from Code
}

func (e *apiError) Error() string { return e.Code + ": " + e.Message }

func badRequest(param, format string, args ...any) *apiError {
	msg := fmt.Sprintf(format, args...)
	if param != "" && !strings.HasPrefix(msg, param) {
		msg = param + ": " + msg
	}
	return &apiError{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: msg, Param: param}
}

// nativeError is the native JSON error body and the data of the SSE error
// event.
type nativeError struct {
	Code      string `json:"code"`
	Message   string `json:"message"`
	Retriable bool   `json:"retriable"`
	Param     string `json:"param,omitempty"`
}

func (e *apiError) native() nativeError {
	return nativeError{Code: e.Code, Message: e.Message, Retriable: e.Retriable, Param: e.Param}
}

// ollamaError is Ollama's error body (and the last line of a stream that
// failed).
type ollamaError struct {
	Error string `json:"error"`
}

// oaiError is OpenAI's error object.
type oaiError struct {
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`
}

func (e *apiError) openai() oaiError {
	o := oaiError{Message: e.Message, Type: e.OAIType}
	if o.Type == "" {
		switch {
		case e.Status == http.StatusUnauthorized:
			o.Type = "authentication_error"
		case e.Status == http.StatusNotFound:
			o.Type = "not_found_error"
		case e.Status >= 500:
			o.Type = "server_error"
		default:
			o.Type = "invalid_request_error"
		}
	}
	if e.Param != "" {
		p := e.Param
		o.Param = &p
	}
	code := e.OAICode
	if code == "" {
		code = strings.ToLower(e.Code)
	}
	o.Code = &code
	return o
}

// errShape is the shape in which an endpoint answers errors.
type errShape uint8

const (
	shapeNative errShape = iota // {"code","message","retriable","param"}
	shapeOpenAI                 // {"error":{"message","type","param","code"}}
	shapeOllama                 // {"error":"message"}
)

// shapeOf is the error shape of the endpoints under path.
func shapeOf(path string) errShape {
	switch {
	case strings.HasPrefix(path, "/v1/"):
		return shapeOpenAI
	case strings.HasPrefix(path, "/api/"):
		return shapeOllama
	}
	return shapeNative
}

// writeError answers a request that has not started a stream.
func writeError(w http.ResponseWriter, shape errShape, e *apiError) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	if e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests {
		if h.Get("Retry-After") == "" {
			h.Set("Retry-After", "1")
		}
	}
	if e.Status == http.StatusUnauthorized {
		h.Set("WWW-Authenticate", `Bearer realm="worker-orcd"`)
	}
	w.WriteHeader(e.Status)
	var body any = e.native()
	switch shape {
	case shapeOpenAI:
		body = struct {
			Error oaiError `json:"error"`
		}{e.openai()}
	case shapeOllama:
		body = ollamaError{Error: e.Message}
	}
	b, _ := json.Marshal(body)
	w.Write(append(b, '\n'))
}

// Causes given to a job's context when it is cancelled on purpose.
var (
	errCancelRequested = errors.New("cancelled by POST /cancel")
	errShutdown        = errors.New("the worker is shutting down")
)

// engineError maps an error from engine.Generate (or its cancellation
// cause) to an answer. promptParam names the request field that holds the
// prompt, for OpenAI's param.
func engineError(err error, cause error, promptParam string) *apiError {
	var ae *apiError
	var cle *engine.ContextLengthError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.Is(err, backend.ErrOutOfMemory):
		// Device memory, or the CPU backend's KV budget: the message says
		// which memory, how much was asked and how much was free.
		return &apiError{Status: http.StatusInsufficientStorage, Code: CodeVRAMOOM, Message: err.Error(), Retriable: true}
	case errors.Is(err, backend.ErrDevice):
		return &apiError{Status: http.StatusInternalServerError, Code: CodeCUDAError, Message: err.Error()}
	case errors.Is(err, engine.ErrUnsupported):
		return &apiError{Status: http.StatusNotImplemented, Code: CodeUnsupported, Message: err.Error(),
			OAIType: "invalid_request_error", OAICode: "unsupported_operation"}
	case errors.As(err, &cle):
		return &apiError{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: cle.Error(),
			Param: promptParam, OAICode: "context_length_exceeded"}
	case errors.Is(err, engine.ErrInvalidRequest):
		return &apiError{Status: http.StatusBadRequest, Code: CodeInvalidRequest, Message: err.Error()}
	case errors.Is(err, engine.ErrQueueFull):
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeQueueFull, Message: err.Error(), Retriable: true}
	case errors.Is(err, engine.ErrClosed):
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeShuttingDown, Message: "the worker is shutting down; retry on another worker", Retriable: true}
	case (errors.Is(err, engine.ErrCancelled) || errors.Is(err, context.Canceled)) && errors.Is(cause, errShutdown):
		// The server stopped the job, not the client: a retriable 503.
		return &apiError{Status: http.StatusServiceUnavailable, Code: CodeShuttingDown, Retriable: true,
			Message: "the job was stopped: the worker is shutting down; retry on another worker", OAIType: "server_error"}
	case errors.Is(err, engine.ErrCancelled), errors.Is(err, context.Canceled):
		msg := "the job was cancelled (the client went away)"
		if errors.Is(cause, errCancelRequested) {
			msg = "the job was cancelled by POST /cancel"
		}
		return &apiError{Status: 499, Code: CodeCancelled, Message: msg}
	case errors.Is(err, engine.ErrForward):
		return &apiError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
	}
	return &apiError{Status: http.StatusInternalServerError, Code: CodeInternal, Message: err.Error()}
}
