package server

import (
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
)

// HTTPServer returns the http.Server that serves s with the timeouts of
// its Config: a client has ReadHeaderTimeout to send its headers (the body
// has BodyReadTimeout, enforced by the handlers so that long streams are
// not cut), and an idle keep-alive connection is closed after IdleTimeout.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.cfg.ReadHeaderTimeout,
		IdleTimeout:       s.cfg.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		ConnState:         connState,
	}
}

// connState tells a connection's listener whether it sits idle between
// requests (an idle keep-alive connection is the one closed first when the
// connection bound is reached).
func connState(c net.Conn, st http.ConnState) {
	if lc, ok := c.(*limitConn); ok {
		lc.l.setIdle(lc, st == http.StateIdle)
	}
}

// Listen listens on addr (host:port) and bounds the connections open at
// once to Config.MaxConnections (see LimitListener).
func (s *Server) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return s.LimitListener(ln), nil
}

// LimitListener wraps ln so that at most Config.MaxConnections accepted
// connections are served at once. A client beyond that first makes the
// idle keep-alive connections close, then waits for one to close (the
// clients after it wait in the kernel's backlog rather than taking the
// process's file descriptors); a warning is logged once each time the
// bound is reached. A stalled client holds its place only until
// ReadHeaderTimeout, BodyReadTimeout, WriteTimeout or IdleTimeout closes
// its connection. The open count is in /metrics.
func (s *Server) LimitListener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, s: s, sem: make(chan struct{}, s.cfg.MaxConnections), done: make(chan struct{}),
		idle: map[*limitConn]struct{}{}}
}

type limitListener struct {
	net.Listener
	s         *Server
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	full      atomic.Bool // the bound was reached and not yet left

	mu   sync.Mutex
	idle map[*limitConn]struct{} // keep-alive connections between requests
}

func (l *limitListener) setIdle(c *limitConn, idle bool) {
	if idle && l.full.Load() {
		c.Close() // a client waits for a place: this one needs it less
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if idle {
		l.idle[c] = struct{}{}
	} else {
		delete(l.idle, c)
	}
}

// closeIdle closes the keep-alive connections that wait between requests:
// at the bound, a new client is worth more than a connection kept for
// reuse (its client simply opens another when it needs one).
func (l *limitListener) closeIdle() int {
	l.mu.Lock()
	idle := make([]*limitConn, 0, len(l.idle))
	for c := range l.idle {
		idle = append(idle, c)
	}
	clear(l.idle)
	l.mu.Unlock()
	for _, c := range idle {
		c.Close()
	}
	return len(idle)
}

func (l *limitListener) Accept() (net.Conn, error) {
	// Take the connection first, so that the bound is only ever enforced
	// for a client that is really there: one accepted connection at most
	// waits beyond the bound, holding one more descriptor.
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	select {
	case l.sem <- struct{}{}:
	default:
		if !l.full.Swap(true) {
			l.s.log.Warn("connection limit reached: idle keep-alive connections are closed, and new connections wait until one closes (raise --max-connections, or find the clients holding connections open)",
				"open", cap(l.sem))
		}
		l.s.met.connLimitHits.Inc()
		l.closeIdle()
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			c.Close()
			return nil, net.ErrClosed
		}
	}
	if l.full.Swap(false) {
		l.s.log.Info("a waiting connection was let in", "open", len(l.sem), "limit", cap(l.sem))
	}
	l.s.openConns.Add(1)
	return &limitConn{Conn: c, l: l}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	l    *limitListener
	once sync.Once
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.setIdle(c, false)
		c.l.s.openConns.Add(-1)
		<-c.l.sem
	})
	return err
}
