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
// connections are open at once. Beyond that Accept waits for one to close
// (new clients wait in the kernel's backlog rather than taking the
// process's file descriptors), and a warning is logged once each time the
// bound is reached. A stalled client holds its place only until
// ReadHeaderTimeout, BodyReadTimeout, WriteTimeout or IdleTimeout closes
// its connection. The open count is in /metrics.
func (s *Server) LimitListener(ln net.Listener) net.Listener {
	return &limitListener{Listener: ln, s: s, sem: make(chan struct{}, s.cfg.MaxConnections), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	s         *Server
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	full      atomic.Bool // the bound was reached and not yet left
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	default:
		if !l.full.Swap(true) {
			l.s.log.Warn("connection limit reached: new connections wait until one closes (raise --max-connections, or find the clients holding connections open)",
				"open", cap(l.sem))
		}
		l.s.met.connLimitHits.Inc()
		select {
		case l.sem <- struct{}{}:
		case <-l.done:
			return nil, net.ErrClosed
		}
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	if len(l.sem) < cap(l.sem) && l.full.Swap(false) {
		l.s.log.Info("connections below the limit again", "open", len(l.sem), "limit", cap(l.sem))
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
		c.l.s.openConns.Add(-1)
		<-c.l.sem
	})
	return err
}
