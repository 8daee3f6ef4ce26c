package gguf

import (
	"os"
	"strconv"
)

// Open maps a GGUF file read-only and parses it. Close the File when done.
func Open(path string) (*File, error) { return open(path, Parse) }

// OpenHeader maps a GGUF file and parses it with ParseHeader: for
// diagnosing files that Open refuses as truncated.
func OpenHeader(path string) (*File, error) { return open(path, ParseHeader) }

func open(path string, parse func([]byte) (*File, error)) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, &Error{Offset: -1, Kind: ErrIO, Err: err,
			Msg: "cannot open model file: " + err.Error() + " (check the path and its permissions)"}
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, &Error{Offset: -1, Kind: ErrIO, Err: err, Msg: "cannot stat model file: " + err.Error()}
	}
	if st.IsDir() {
		return nil, errNoOffset(ErrIO, "%s is a directory, want a .gguf file", strconv.Quote(path))
	}
	size := st.Size()
	if size == 0 {
		return nil, errNoOffset(ErrTruncated, "%s is empty (0 bytes), want a GGUF file starting with \"GGUF\" 47 47 55 46: the download failed or was interrupted", strconv.Quote(path))
	}
	data, unmap, err := mapFile(fh, size)
	if err != nil {
		return nil, &Error{Offset: -1, Kind: ErrIO, Err: err, Msg: "cannot map model file " + strconv.Quote(path) + ": " + err.Error()}
	}
	f, err := parse(data)
	if err != nil {
		unmap()
		return nil, err
	}
	f.unmap = unmap
	return f, nil
}
