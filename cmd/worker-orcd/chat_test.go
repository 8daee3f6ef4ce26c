package main

import (
	"bytes"
	"io"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"worker-orcd/internal/testmodel"
)

// ptyReader collects what the program writes to the terminal.
type ptyReader struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (p *ptyReader) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.ReplaceAll(p.buf.String(), "\r", "")
}

// waitFor waits until the terminal shows want n times in all.
func (p *ptyReader) waitFor(t *testing.T, want string, n int) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		if s := p.text(); strings.Count(s, want) >= n {
			return s
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("the terminal never showed %q %d times:\n%s", want, n, p.text())
	return ""
}

// TestChatPTY drives `chat` through a pseudo-terminal as a person would:
// two turns, /reset, the same first message again (greedy: the same reply
// as the first time, since the conversation was forgotten), /system, /exit.
func TestChatPTY(t *testing.T) {
	s := testmodel.MustPreset("qwen2-micro")
	s.Type, s.Seed = testmodel.Q8_0, 11
	model := filepath.Join(t.TempDir(), "chat.gguf")
	if err := s.Write(model); err != nil {
		t.Fatal(err)
	}
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("no pseudo-terminal on this machine: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	term := &ptyReader{}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := ptmx.Read(b)
			term.mu.Lock()
			term.buf.Write(b[:n])
			term.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	done := make(chan int, 1)
	go func() {
		done <- runIO([]string{"chat", "--model", model, "--device", "cpu", "--temperature", "0", "-n", "12"}, tty, tty, tty)
	}()
	// reply returns what the model answered to the last message: the text
	// between the echoed line and the next prompt.
	turn := func(msg string, prompts int) string {
		t.Helper()
		io.WriteString(ptmx, msg+"\n")
		s := term.waitFor(t, ">>> ", prompts)
		i := strings.LastIndex(s, msg+"\n")
		return strings.TrimSuffix(s[i+len(msg)+1:], ">>> ")
	}
	banner := term.waitFor(t, ">>> ", 1)
	if !strings.Contains(banner, "chat with "+model) || !strings.Contains(banner, "/exit") {
		t.Fatalf("banner: %q", banner)
	}
	first := turn("Hello there", 2)
	second := turn("And then?", 3)
	if strings.TrimSpace(first) == "" || strings.TrimSpace(second) == "" {
		t.Logf("a reply is empty (the model's first token ended it): %q, %q", first, second)
	}
	if got := turn("/reset", 4); !strings.Contains(got, "(conversation cleared)") {
		t.Fatalf("/reset answered %q", got)
	}
	if again := turn("Hello there", 5); again != first {
		t.Fatalf("after /reset the same message got %q, the first time %q: the conversation was not forgotten", again, first)
	}
	if got := turn("/system Answer briefly.", 6); !strings.Contains(got, "system message set") {
		t.Fatalf("/system answered %q", got)
	}
	io.WriteString(ptmx, "/exit\n")
	select {
	case code := <-done:
		if code != 0 {
			t.Fatalf("chat exited %d:\n%s", code, term.text())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("chat did not exit after /exit:\n%s", term.text())
	}
}

// TestChatPipe: without a terminal, each line of standard input is a
// message and the replies go to standard output, without prompts.
func TestChatPipe(t *testing.T) {
	s := testmodel.MustPreset("qwen2-micro")
	s.Type, s.Seed = testmodel.Q8_0, 11
	model := filepath.Join(t.TempDir(), "chat.gguf")
	if err := s.Write(model); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	code := runIO([]string{"chat", "--model", model, "--device", "cpu", "--temperature", "0", "-n", "4"},
		strings.NewReader("Hi\n/reset\nHi\n/bogus\n"), &out, &errb)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	o := out.String()
	if strings.Contains(o, ">>>") || !strings.Contains(o, "(conversation cleared)") || !strings.Contains(o, "unknown command /bogus") {
		t.Fatalf("output:\n%s", o)
	}
	parts := strings.Split(o, "(conversation cleared)\n")
	if len(parts) != 2 || !strings.HasPrefix(parts[1], parts[0]) {
		t.Fatalf("the reply after /reset differs from the first:\n%s", o)
	}
}
