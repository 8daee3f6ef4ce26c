package server

import (
	"net/http"

	"worker-orcd/engine"
)

// generation is what one generation endpoint adds to the skeleton they all
// share (serveGeneration): the engine request and how its answer is
// written. The skeleton does the rest the same way for every endpoint:
// loading check, body, admission, job registration and cancellation,
// metrics, giving the place back when generation ends, and errors in the
// endpoint's shape.
type generation struct {
	id          string         // job id (cancellable through /cancel)
	req         engine.Request // what to run
	promptParam string         // the request field that holds the prompt, for errors

	// begin, when not nil, starts a stream (headers, an opening event)
	// once the job is registered; its error cancels the job.
	begin func() error
	// token receives each generated token in order; its error (the client
	// went away) cancels the job.
	token func(engine.Token) error
	// done writes the answer (or the end of the stream) after a run that
	// ended normally; the place in the queue is already given back.
	done func(*engine.Result)
	// failed ends a stream that has begun with an error; before a stream
	// begins, errors are plain HTTP answers in the endpoint's shape.
	failed func(*apiError)
}

// serveGeneration is the skeleton of every generation endpoint: B is the
// endpoint's request body, read here (strictly) unless the handler passes
// it already read; setup checks it and says how to answer.
func serveGeneration[B any](s *Server, w http.ResponseWriter, r *http.Request, shape errShape, body *B,
	setup func(m *engine.Model, body *B) (*generation, *apiError)) {
	if s.model.Load() == nil {
		writeError(w, shape, s.notReady())
		return
	}
	if body == nil {
		body = new(B)
		if e := s.decodeBody(w, r, body); e != nil {
			writeError(w, shape, e)
			return
		}
	}
	m, release, e := s.acquire()
	if e != nil {
		writeError(w, shape, e)
		return
	}
	defer release()
	g, e := setup(m, body)
	if e != nil {
		writeError(w, shape, e)
		return
	}
	began := false
	var begin func() error
	if g.begin != nil {
		begin = func() error {
			began = true
			return g.begin()
		}
	}
	res, e := s.generate(r, m, g.id, g.req, g.promptParam, begin, g.token)
	release() // generation is over: the place goes to the next request
	switch {
	case e != nil && began:
		g.failed(e)
	case e != nil:
		writeError(w, shape, e)
	default:
		g.done(res)
	}
}
