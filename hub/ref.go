// Package hub names models by reference and pulls them into the Hugging Face
// hub cache, so that the files are shared with the hub's own tools.
//
// A reference is one of
//
//	hf.co/OWNER/REPO:QUANT          the GGUF file of that quantization (Q4_K_M, Q8_0, …)
//	hf.co/OWNER/REPO                the repository's only GGUF model, else its Q4_K_M
//	hf.co/OWNER/REPO/PATH.gguf      that file
//	hf.co/OWNER/REPO@REV…           any of these at a branch, tag or commit (default main)
//	https://HOST/…/NAME.gguf        a plain URL (a hub "resolve" URL is read as hf.co/…)
//
// The cache is the hub's layout (HF_HUB_CACHE, else HF_HOME/hub, else
// $XDG_CACHE_HOME/huggingface/hub, else ~/.cache/huggingface/hub):
//
//	models--OWNER--REPO/blobs/<sha256>                       the file's bytes
//	models--OWNER--REPO/blobs/<sha256>.incomplete            a download in progress (resumed with Range)
//	models--OWNER--REPO/refs/<revision>                      the commit the revision pointed to
//	models--OWNER--REPO/snapshots/<commit>/<path>            a relative symbolic link to the blob
//
// Downloads resume where an earlier one stopped, retry a dropped connection
// from the byte it reached, and are checked against the SHA-256 the hub
// publishes for the file: a mismatch removes the download and is an error,
// so a damaged file is never linked into a snapshot. Split GGUF models
// (NAME-00001-of-0000N.gguf) are pulled part by part as one model.
package hub

import (
	"fmt"
	"net/url"
	"path"
	"regexp"
	"strings"
)

// DefaultRevision is the revision a reference without @REV names.
const DefaultRevision = "main"

// DefaultQuant is the quantization picked when a reference names neither a
// file nor a quantization and the repository holds more than one model.
const DefaultQuant = "Q4_K_M"

// Ref is a parsed model reference. Exactly one of Repo and URL is set.
type Ref struct {
	Repo     string // OWNER/REPO on the hub
	Revision string // branch, tag or commit; DefaultRevision when not given
	Quant    string // the quantization asked for (hf.co/o/r:Q4_K_M); "" when File is set or none was given
	File     string // a path inside the repository (hf.co/o/r/x.gguf)
	URL      string // a plain URL outside the hub
}

// String is the reference in its canonical form; ParseRef reads it back to
// the same Ref.
func (r Ref) String() string {
	if r.URL != "" {
		return r.URL
	}
	s := "hf.co/" + r.Repo
	if r.Revision != "" && r.Revision != DefaultRevision {
		s += "@" + r.Revision
	}
	switch {
	case r.File != "":
		s += "/" + r.File
	case r.Quant != "":
		s += ":" + r.Quant
	}
	return s
}

// hubPrefixes are the host names a reference may start with.
var hubPrefixes = []string{"hf.co/", "huggingface.co/"}

// LooksLikeRef reports whether s is meant as a reference rather than a
// path: it starts with hf.co/, huggingface.co/, http:// or https://.
func LooksLikeRef(s string) bool {
	for _, p := range append(hubPrefixes, "http://", "https://") {
		if strings.HasPrefix(s, p) {
			return true
		}
	}
	return false
}

// The forms accepted.
const refForms = "want hf.co/OWNER/REPO[:QUANT], hf.co/OWNER/REPO/FILE.gguf or an http(s) URL"

var (
	nameRE  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,95}$`)
	revRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$`)
	quantRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,31}$`)
	splitRE = regexp.MustCompile(`^(.*)-(\d{5})-of-(\d{5})\.gguf$`)
)

// ParseRef reads a model reference (see the package documentation).
func ParseRef(s string) (Ref, error) {
	bad := func(why string) (Ref, error) {
		return Ref{}, &Error{Code: CodeBadRef, Kind: ErrBadRef, Msg: fmt.Sprintf("%q: %s (%s)", s, why, refForms)}
	}
	if strings.HasPrefix(s, "http://") || strings.HasPrefix(s, "https://") {
		return parseURL(s, bad)
	}
	rest, found := "", false
	for _, p := range hubPrefixes {
		if strings.HasPrefix(s, p) {
			rest, found = s[len(p):], true
			break
		}
	}
	if !found {
		return bad("not a model reference")
	}
	parts := strings.SplitN(rest, "/", 3)
	if len(parts) < 2 {
		return bad("no repository")
	}
	owner, name := parts[0], parts[1]
	r := Ref{Revision: DefaultRevision}
	if len(parts) == 2 {
		// OWNER/REPO[@REV][:QUANT]
		if i := strings.IndexByte(name, ':'); i >= 0 {
			r.Quant = name[i+1:]
			name = name[:i]
			if !quantRE.MatchString(r.Quant) {
				return bad(fmt.Sprintf("quantization %q is not a name like Q4_K_M", r.Quant))
			}
		}
	} else {
		r.File = parts[2]
	}
	if i := strings.IndexByte(name, '@'); i >= 0 {
		r.Revision = name[i+1:]
		name = name[:i]
		if !validRevision(r.Revision) {
			return bad(fmt.Sprintf("revision %q is not a branch, tag or commit name", r.Revision))
		}
	}
	if !validName(owner) || !validName(name) {
		return bad(fmt.Sprintf("repository %q is not OWNER/REPO (letters, digits, '.', '_' and '-')", owner+"/"+name))
	}
	r.Repo = owner + "/" + name
	if r.File != "" {
		if err := checkFile(r.File); err != "" {
			return bad(err)
		}
	}
	return r, nil
}

func validName(s string) bool {
	return nameRE.MatchString(s) && !strings.Contains(s, "--") && !strings.Contains(s, "..") &&
		!strings.HasSuffix(s, ".") && !strings.HasSuffix(s, "-")
}

func validRevision(s string) bool {
	return revRE.MatchString(s) && !strings.Contains(s, "..")
}

// checkFile says what is wrong with a path inside a repository, or "".
func checkFile(p string) string {
	if !strings.HasSuffix(strings.ToLower(p), ".gguf") {
		return fmt.Sprintf("file %q is not a .gguf file", p)
	}
	if len(p) > 512 {
		return "file path too long"
	}
	for _, c := range strings.Split(p, "/") {
		if c == "" || c == "." || c == ".." || strings.HasPrefix(c, ".") {
			return fmt.Sprintf("file path %q has an empty, hidden, '.' or '..' part", p)
		}
		for _, ch := range c {
			if ch < 0x20 || ch == 0x7f || ch == '\\' || ch == ':' || ch == '@' {
				return fmt.Sprintf("file path %q has a control character, '\\', ':' or '@'", p)
			}
		}
	}
	return ""
}

// parseURL reads an http(s) URL: a hub resolve (or blob) URL becomes a hub
// reference, anything else a plain URL.
func parseURL(s string, bad func(string) (Ref, error)) (Ref, error) {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return bad("not a valid URL")
	}
	if u.Host == "huggingface.co" || u.Host == "hf.co" {
		// /OWNER/REPO/resolve/REV/PATH
		p := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", 5)
		if len(p) == 5 && (p[2] == "resolve" || p[2] == "blob") && u.RawQuery == "" {
			r, err := ParseRef("hf.co/" + p[0] + "/" + p[1] + "@" + p[3] + "/" + p[4])
			if err != nil {
				return bad("a hub URL, but not OWNER/REPO/resolve/REV/FILE.gguf")
			}
			return r, nil
		}
		return bad("a hub URL must be https://huggingface.co/OWNER/REPO/resolve/REV/FILE.gguf")
	}
	base := path.Base(u.Path)
	if !strings.HasSuffix(strings.ToLower(base), ".gguf") || checkFile(base) != "" {
		return bad("the URL's path does not end in a .gguf file name")
	}
	return Ref{URL: u.String()}, nil
}

// splitName reads a split GGUF part's name (NAME-00001-of-00003.gguf): the
// name before the numbers, the part and the count. ok is false for a
// file that is not a part.
func splitName(p string) (prefix string, part, count int, ok bool) {
	m := splitRE.FindStringSubmatch(p)
	if m == nil {
		return "", 0, 0, false
	}
	fmt.Sscan(m[2], &part)
	fmt.Sscan(m[3], &count)
	if part < 1 || count < 1 || part > count {
		return "", 0, 0, false
	}
	return m[1], part, count, true
}

// splitParts lists all parts of the split model that p is one part of, in
// order; a file that is not a part is its own only part.
func splitParts(p string) []string {
	prefix, _, count, ok := splitName(p)
	if !ok {
		return []string{p}
	}
	parts := make([]string, count)
	for i := range parts {
		parts[i] = fmt.Sprintf("%s-%05d-of-%05d.gguf", prefix, i+1, count)
	}
	return parts
}

// matchesQuant reports whether file (a path) is the model of quantization q:
// its name, case aside, holds q between a separator ('-', '.', '_' or the
// start) and ".gguf" or a split suffix.
func matchesQuant(file, q string) bool {
	name := strings.ToLower(path.Base(file))
	if prefix, _, _, ok := splitName(name); ok {
		name = prefix
	} else if strings.HasSuffix(name, ".gguf") {
		name = strings.TrimSuffix(name, ".gguf")
	} else {
		return false
	}
	q = strings.ToLower(q)
	if !strings.HasSuffix(name, q) {
		return false
	}
	before := name[:len(name)-len(q)]
	return before == "" || strings.ContainsAny(before[len(before)-1:], "-._")
}
