package server

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"time"

	"worker-orcd/engine"
)

// maxChoices bounds OpenAI's n: the choices generated for one request.
const maxChoices = 16

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
	// n is the number of choices (OpenAI's n; 0 counts as 1): n engine
	// runs of req over the same prompt, choice i with choiceRequest(req,
	// i). The first runs alone until it has read the prompt; the others
	// then share its prompt's KV blocks (the engine's prefix cache)
	// instead of computing them again.
	n int

	// begin, when not nil, starts a stream (headers, an opening event)
	// once the job is registered; its error cancels the job.
	begin func() error
	// token receives each generated token of a choice in order; its error
	// (the client went away) cancels the job. Calls for different choices
	// interleave but never overlap (nor do they overlap end's).
	token func(choice int, t engine.Token) error
	// end, when not nil, is called as soon as a choice has ended normally,
	// while others may still run (a stream writes the choice's
	// finish_reason there); its error cancels the job.
	end func(choice int, res *engine.Result) error
	// done writes the answer (or the end of the stream) after every choice
	// ended normally, results in choice order; the place in the queue is
	// already given back.
	done func(res []*engine.Result)
	// failed ends a stream that has begun with an error; before a stream
	// begins, errors are plain HTTP answers in the endpoint's shape.
	failed func(*apiError)
}

// choices is implemented by the request bodies that ask for several
// choices (OpenAI's n), so that serveGeneration takes the places they run
// in before it checks the body.
type choices interface{ choices() int }

// serveGeneration is the skeleton of every generation endpoint: B is the
// endpoint's request body, read here (strictly) unless the handler passes
// it already read; setup checks it and says how to answer.
func serveGeneration[B any](s *Server, w http.ResponseWriter, r *http.Request, shape errShape, body *B,
	setup func(m *engine.Model, body *B) (*generation, *apiError)) {
	m := s.model.Load()
	if m == nil {
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
	// A request of n choices runs up to one per slot at once, each in a
	// place of its own (so that the engine's queue cannot overflow).
	places := 1
	if c, ok := any(body).(choices); ok {
		places = min(max(c.choices(), 1), maxChoices, m.Options().Parallel)
	}
	m, release, e := s.acquireN(places)
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
	res, e := s.generate(r, m, g, places, begin)
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

// choiceRequest is choice i's engine request: req itself, but for the
// seed. A seeded request's choice i draws with seed + i (modulo 2^64), so
// that it is what the same request with n = 1 and that seed gives; without
// a seed every choice draws its own. Greedy choices are all the same.
func choiceRequest(req engine.Request, i int) engine.Request {
	if i == 0 || req.Params.Seed == nil {
		return req
	}
	seed := *req.Params.Seed + uint64(i)
	req.Params.Seed = &seed
	return req
}

// generate runs g's choices on the engine as job g.id, at most workers at
// once, calling g.token for each token and g.end as each choice ends, and
// keeps the metrics. It returns the results in choice order and, when a
// run did not end normally, the error to report (the first choice's that
// was not a cancellation caused by another choice's failure).
//
// started, when not nil, is called once the job is registered, before the
// engine runs it (a stream sends its headers there); an error from it or
// from a callback (the client went away) cancels the job.
func (s *Server) generate(r *http.Request, m *engine.Model, g *generation, workers int, started func() error) ([]*engine.Result, *apiError) {
	ri := info(r)
	ri.jobID = g.id
	ctx, cancel := context.WithCancelCause(r.Context())
	defer cancel(nil)
	if !s.register(g.id, cancel) {
		return nil, &apiError{Status: http.StatusConflict, Code: CodeInvalidRequest, Param: "job_id",
			Message: "job_id " + g.id + " is already running: choose another id or cancel it first"}
	}
	defer s.unregister(g.id)
	if started != nil {
		if err := started(); err != nil {
			ri.outcome = outcomeCancelled
			return nil, engineError(engine.ErrCancelled, nil, g.promptParam)
		}
	}
	n := max(g.n, 1)
	// A failed choice stops the others (runCtx); the job's own
	// cancellation (ctx) carries the cause that the error reports.
	runCtx, stopAll := context.WithCancel(ctx)
	defer stopAll()
	results := make([]*engine.Result, n)
	errs := make([]error, n)
	var cbMu sync.Mutex // the endpoint's callbacks run one at a time
	start := time.Now()
	run := func(i int, read func()) {
		last := start
		var cbErr error
		res, err := m.Generate(runCtx, choiceRequest(g.req, i), func(t engine.Token) error {
			now := time.Now()
			if t.Index == 0 {
				s.met.ttft.Observe(now.Sub(start).Seconds())
				read()
			} else {
				s.met.itl.Observe(now.Sub(last).Seconds())
			}
			last = now
			cbMu.Lock()
			defer cbMu.Unlock()
			cbErr = g.token(i, t)
			return cbErr
		})
		read()
		if res != nil && i == 0 { // the choices share one prompt: counted once, as the usage does
			s.met.prompt.WithLabelValues(s.modelLabel()).Add(float64(res.PromptTokens))
		}
		if res != nil {
			s.met.generated.WithLabelValues(s.modelLabel()).Add(float64(len(res.IDs)))
			if err == nil {
				s.met.rates.add(res)
			}
		}
		if err == nil && g.end != nil {
			cbMu.Lock()
			err = g.end(i, res)
			cbMu.Unlock()
			if err != nil {
				cbErr = err
			}
		}
		if err != nil {
			if cbErr != nil && err == cbErr {
				err = engine.ErrCancelled // the client stopped reading
			}
			stopAll()
		}
		results[i], errs[i] = res, err
	}

	// The first choice reads the prompt; the others start once it has
	// (its first token, or its end), so that they copy the prompt's rows
	// from its cache. Without the prefix cache there is nothing to share:
	// they all start at once.
	prompted := make(chan struct{})
	var once sync.Once
	read := func() { once.Do(func() { close(prompted) }) }
	if g.req.NoPrefixCache || m.Options().NoPrefixCache {
		read()
	}
	sem := make(chan struct{}, workers)
	var wg sync.WaitGroup
	sem <- struct{}{}
	wg.Go(func() {
		defer func() { <-sem }()
		run(0, read)
	})
	<-prompted
	for i := 1; i < n && runCtx.Err() == nil; i++ {
		select {
		case sem <- struct{}{}:
		case <-runCtx.Done():
			continue // the loop ends: the choice never started
		}
		wg.Go(func() {
			defer func() { <-sem }()
			run(i, func() {})
		})
	}
	wg.Wait()

	tokens := 0
	for _, res := range results {
		if res != nil {
			tokens += len(res.IDs)
		}
	}
	ri.tokens = tokens
	s.met.duration.WithLabelValues(ri.endpoint, s.modelLabel()).Observe(time.Since(start).Seconds())
	var first error
	for i, res := range results {
		err := errs[i]
		if res == nil && err == nil {
			err = engine.ErrCancelled // never started: an earlier choice failed
		}
		if err != nil && (first == nil || errors.Is(first, engine.ErrCancelled) && !errors.Is(err, engine.ErrCancelled)) {
			first = err
		}
	}
	if first != nil {
		ae := engineError(first, context.Cause(ctx), g.promptParam)
		if ae.Code == CodeCancelled || ctx.Err() != nil {
			ri.outcome = outcomeCancelled
		} else {
			ri.outcome = outcomeFor(ae.Status)
		}
		return results, ae
	}
	ri.outcome = outcomeOK
	return results, nil
}
