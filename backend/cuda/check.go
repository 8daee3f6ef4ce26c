package cuda

import (
	"fmt"
	"unsafe"

	"worker-orcd/model"
	"worker-orcd/quant"
)

// tensorOffset returns where matrix m's bytes start in data, the file's
// tensor data section (uploaded verbatim, so the same offset on the
// device), after checking that they lie inside it and hold m.Rows rows of
// m.RowBytes bytes: a kernel reads rows·row_bytes bytes from there, and a
// wrong offset would read another tensor's bytes or past the allocation.
func tensorOffset(data []byte, m *model.Matrix) (int64, error) {
	bad := func(format string, v ...any) error {
		return &model.Error{Code: "WeightMappingError", Kind: model.ErrMapping,
			Msg: fmt.Sprintf("tensor %q: ", m.Name) + fmt.Sprintf(format, v...) + ": the file is damaged or was written by a buggy tool; download it again"}
	}
	if m.Rows < 1 || m.RowBytes < 1 {
		return 0, bad("%d rows of %d bytes", m.Rows, m.RowBytes)
	}
	if want, err := quant.RowBytes(m.Type, m.Cols); err != nil || want != m.RowBytes {
		return 0, bad("rows of %d %s elements take %d bytes, the tensor says %d (%v)", m.Cols, m.Type, want, m.RowBytes, err)
	}
	need := int64(m.Rows) * int64(m.RowBytes)
	if int64(len(m.Data)) < need {
		return 0, bad("%d bytes of data, %d rows of %d bytes need %d", len(m.Data), m.Rows, m.RowBytes, need)
	}
	if len(data) == 0 {
		return 0, bad("the file has no tensor data")
	}
	base := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	p := uintptr(unsafe.Pointer(unsafe.SliceData(m.Data)))
	if p < base || p-base > uintptr(len(data)) || int64(p-base)+need > int64(len(data)) {
		return 0, bad("its %d bytes are not inside the file's tensor data (%d bytes)", need, len(data))
	}
	return int64(p - base), nil
}
