package cuda

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"worker-orcd/backend/cuda/kernels"
)

// TestKernelArgsPacking: each parameter gets its own slot holding the value
// in the kernel's C type, ptrs point at the slots in order, and an int that
// does not fit a C int is an error (never narrowed).
func TestKernelArgsPacking(t *testing.T) {
	m := new(mmArgs)
	a := newArgs().ptr("p", 0x1234_5678_9abc).i32("n", -7).i64("l", 1<<40).f32("f", 1.5).mmArg(m)
	if a.err != nil {
		t.Fatal(a.err)
	}
	if a.n != 5 {
		t.Fatalf("%d parameters, want 5", a.n)
	}
	if got := *(*uint64)(a.ptrs[0]); got != 0x1234_5678_9abc {
		t.Errorf("pointer parameter %#x", got)
	}
	if got := *(*int32)(a.ptrs[1]); got != -7 {
		t.Errorf("int parameter %d", got)
	}
	if got := *(*int64)(a.ptrs[2]); got != 1<<40 {
		t.Errorf("long parameter %d", got)
	}
	if got := *(*float32)(a.ptrs[3]); got != 1.5 {
		t.Errorf("float parameter %g", got)
	}
	if a.ptrs[4] != unsafe.Pointer(m) {
		t.Errorf("MMArgs parameter does not point at the struct")
	}
	for _, v := range []int{math.MaxInt32 + 1, math.MinInt32 - 1, 1 << 40} {
		b := newArgs().i32("rows", v)
		if !errors.Is(b.err, ErrLaunch) || !strings.Contains(b.err.Error(), "rows") {
			t.Errorf("i32(%d): error %v, want ErrLaunch naming the parameter", v, b.err)
		}
	}
	if b := newArgs().dev("x", 0); !errors.Is(b.err, ErrLaunch) {
		t.Errorf("null required pointer: error %v", b.err)
	}
	b := newArgs()
	for range maxKernelArgs + 1 {
		b.i32("x", 1)
	}
	if !errors.Is(b.err, ErrLaunch) {
		t.Errorf("too many parameters: error %v", b.err)
	}
}

// stubLaunch replaces the driver's cuLaunchKernel for one test.
func stubLaunch(t *testing.T, f func(fn cuFunction, grid, block [3]uint32, shared uint32, params unsafe.Pointer) cuResult) {
	old := drv.cuLaunchKernel
	drv.cuLaunchKernel = func(fn cuFunction, gx, gy, gz, bx, by, bz, shared uint32, s cuStream, params, extra unsafe.Pointer) cuResult {
		return f(fn, [3]uint32{gx, gy, gz}, [3]uint32{bx, by, bz}, shared, params)
	}
	t.Cleanup(func() { drv.cuLaunchKernel = old })
}

// TestLaunchPassesPinnedParams: what cuLaunchKernel receives is an array of
// pointers to the parameter values, still valid after a collection during
// the call; bad arguments and shapes never reach the driver.
func TestLaunchPassesPinnedParams(t *testing.T) {
	d := &Device{funcs: map[string]cuFunction{"k": 42}}
	calls := 0
	stubLaunch(t, func(fn cuFunction, grid, block [3]uint32, shared uint32, params unsafe.Pointer) cuResult {
		calls++
		runtime.GC()
		ps := unsafe.Slice((*unsafe.Pointer)(params), 3)
		if fn != 42 || grid != [3]uint32{3, 2, 1} || block != [3]uint32{256, 1, 1} || shared != 64 {
			t.Errorf("launch of %d grid %v block %v shared %d", fn, grid, block, shared)
		}
		if *(*uint64)(ps[0]) != 0xdead0000 || *(*int32)(ps[1]) != 77 || (*mmArgs)(ps[2]).Cols != 96 {
			t.Errorf("parameters %#x %d %d", *(*uint64)(ps[0]), *(*int32)(ps[1]), (*mmArgs)(ps[2]).Cols)
		}
		return 0
	})
	if err := d.launch("k", dims(3, 2, 1), dims(256, 1, 1), 64, newArgs().dev("x", 0xdead0000).i32("n", 77).mmArg(&mmArgs{Cols: 96})); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name         string
		grid, block  dim3
		args         *kernelArgs
		kernel, want string
	}{
		{"bad argument", dims(1, 1, 1), dims(32, 1, 1), newArgs().i32("cols", 1<<33), "k", "cols"},
		{"empty grid", dims(0, 1, 1), dims(32, 1, 1), newArgs(), "k", "grid"},
		{"grid.y too large", dims(1, 70000, 1), dims(32, 1, 1), newArgs(), "k", "grid"},
		{"block too large", dims(1, 1, 1), dims(2048, 1, 1), newArgs(), "k", "block"},
		{"kernel not loaded", dims(1, 1, 1), dims(32, 1, 1), newArgs(), "nope", "not loaded"},
	} {
		err := d.launch(c.kernel, c.grid, c.block, 0, c.args)
		if !errors.Is(err, ErrLaunch) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want ErrLaunch mentioning %q", c.name, err, c.want)
		}
	}
	if calls != 1 {
		t.Errorf("%d driver calls, want 1 (refused launches must not reach the driver)", calls)
	}
}

// TestLaunchProgrammaticDependent: with pdl set, a launch goes through
// cuLaunchKernelEx with the shape, the stream and one attribute,
// programmatic stream serialization allowed (id 6, value 1), and the same
// pinned parameter array; without it, and for mmt1_ kernels (pdlKernel),
// through cuLaunchKernel.
func TestLaunchProgrammaticDependent(t *testing.T) {
	if unsafe.Sizeof(cuLaunchAttr{}) != 72 || unsafe.Sizeof(cuLaunchConfig{}) != 56 ||
		unsafe.Offsetof(cuLaunchConfig{}.stream) != 32 || unsafe.Offsetof(cuLaunchConfig{}.numAttrs) != 48 {
		t.Fatalf("layouts: attribute %d bytes (want 72), config %d (want 56), stream at %d (32), numAttrs at %d (48)",
			unsafe.Sizeof(cuLaunchAttr{}), unsafe.Sizeof(cuLaunchConfig{}), unsafe.Offsetof(cuLaunchConfig{}.stream), unsafe.Offsetof(cuLaunchConfig{}.numAttrs))
	}
	d := &Device{funcs: map[string]cuFunction{"k": 7}, stream: 99, pdl: true}
	ex, plain := 0, 0
	old := drv.cuLaunchKernelEx
	drv.cuLaunchKernelEx = func(cfg *cuLaunchConfig, fn cuFunction, params, extra unsafe.Pointer) cuResult {
		ex++
		runtime.GC()
		if fn != 7 || cfg.gridX != 5 || cfg.gridY != 4 || cfg.gridZ != 3 || cfg.blockX != 128 || cfg.blockY != 1 || cfg.blockZ != 1 ||
			cfg.shared != 16 || cfg.stream != 99 || cfg.numAttrs != 1 {
			t.Errorf("config %+v for kernel %d", *cfg, fn)
		}
		if a := cfg.attrs; a == nil || a.id != 6 || *(*int32)(unsafe.Pointer(&a.value[0])) != 1 {
			t.Errorf("attribute %+v, want id 6 value 1", a)
		}
		if ps := unsafe.Slice((*unsafe.Pointer)(params), 1); *(*int32)(ps[0]) != 11 {
			t.Errorf("parameter %d, want 11", *(*int32)(ps[0]))
		}
		return 0
	}
	t.Cleanup(func() { drv.cuLaunchKernelEx = old })
	stubLaunch(t, func(fn cuFunction, grid, block [3]uint32, shared uint32, params unsafe.Pointer) cuResult {
		plain++
		return 0
	})
	if err := d.launch("k", dims(5, 4, 3), dims(128, 1, 1), 16, newArgs().i32("n", 11)); err != nil {
		t.Fatal(err)
	}
	d.funcs["mmt1_f16"] = 8
	if err := d.launch("mmt1_f16", dims(1, 1, 1), dims(32, 1, 1), 0, newArgs().i32("n", 11)); err != nil {
		t.Fatal(err)
	}
	d.pdl = false
	if err := d.launch("k", dims(1, 1, 1), dims(32, 1, 1), 0, newArgs().i32("n", 11)); err != nil {
		t.Fatal(err)
	}
	if ex != 1 || plain != 2 {
		t.Errorf("%d cuLaunchKernelEx and %d cuLaunchKernel calls, want 1 and 2 (mmt1_ and pdl off launch plainly)", ex, plain)
	}
	for _, c := range []struct {
		arch   int
		haveEx bool
		env    string
		want   bool
	}{{90, true, "", true}, {100, true, "1", true}, {90, true, "0", false}, {89, true, "", false}, {80, true, "1", false}, {90, false, "", false}} {
		if got := pdlWanted(c.arch, c.haveEx, c.env); got != c.want {
			t.Errorf("pdlWanted(%d, %v, %q) = %v, want %v", c.arch, c.haveEx, c.env, got, c.want)
		}
	}
}

// TestKernelsStartWithPDLEntry: every kernel's first statement is
// pdl_entry() (pdl_wait() for mmt1_), since any of them may be launched to
// overlap the kernel before it and must not touch memory until that one
// has finished.
func TestKernelsStartWithPDLEntry(t *testing.T) {
	src := kernels.Source()
	re := regexp.MustCompile(`__global__[^{]*\{\s*(\S+)`)
	ms := re.FindAllStringSubmatch(src, -1)
	if len(ms) < 20 {
		t.Fatalf("found %d kernels in the source, want at least 20", len(ms))
	}
	for _, m := range ms {
		want := "pdl_entry();"
		if strings.Contains(m[0], "mmt1_") {
			want = "pdl_wait();" // lets nothing after it start early (pdlKernel)
		}
		if m[1] != want {
			t.Errorf("kernel %.80q... starts with %q, want %s", m[0], m[1], want)
		}
	}
}

// cField is one field of a C struct as parsed from the kernel source.
type cField struct {
	name         string
	size, align  int
	offset, elem int
}

// parseCStruct finds `struct name { … };` in src and lays it out as a C
// compiler does on LP64 (pointers and long 8 bytes, int 4, arrays of the
// element's alignment, the struct padded to its largest alignment). Known
// structs (an earlier parse) can be field types.
func parseCStruct(t *testing.T, src, name string, known map[string][2]int) ([]cField, int, int) {
	t.Helper()
	re := regexp.MustCompile(`(?s)struct\s+` + name + `\s*\{(.*?)\};`)
	m := re.FindStringSubmatch(src)
	if m == nil {
		t.Fatalf("struct %s not found in the kernel sources", name)
	}
	var fields []cField
	off, maxAlign := 0, 1
	for _, line := range strings.Split(m[1], ";") {
		// Drop the comments of the lines around this declaration.
		var keep []string
		for _, l := range strings.Split(line, "\n") {
			if i := strings.Index(l, "//"); i >= 0 {
				l = l[:i]
			}
			keep = append(keep, l)
		}
		decl := strings.Join(strings.Fields(strings.Join(keep, " ")), " ")
		if decl == "" {
			continue
		}
		dm := regexp.MustCompile(`^(?:const )?(\w+)\s*(\*?)\s*(\w+)(?:\[(\d+)\])?$`).FindStringSubmatch(decl)
		if dm == nil {
			t.Fatalf("struct %s: cannot parse field %q", name, decl)
		}
		typ, ptr, fname, count := dm[1], dm[2], dm[3], 1
		if dm[4] != "" {
			count, _ = strconv.Atoi(dm[4])
		}
		var size, align int
		switch {
		case ptr == "*":
			size, align = 8, 8
		case typ == "long" || typ == "u64" || typ == "double":
			size, align = 8, 8
		case typ == "int" || typ == "uint" || typ == "float":
			size, align = 4, 4
		case known[typ] != [2]int{}:
			size, align = known[typ][0], known[typ][1]
		default:
			t.Fatalf("struct %s: field %s of unknown type %s", name, fname, typ)
		}
		off = (off + align - 1) / align * align
		fields = append(fields, cField{name: fname, size: size * count, align: align, offset: off, elem: size})
		off += size * count
		maxAlign = max(maxAlign, align)
	}
	return fields, (off + maxAlign - 1) / maxAlign * maxAlign, maxAlign
}

// mirrorDiffs compares a Go struct with its C original: the same fields
// (names equal ignoring case and underscores, blank Go fields being
// padding) at the same offsets with the same sizes, and the same size.
func mirrorDiffs(goType reflect.Type, cName string, fields []cField, size int) []string {
	var diffs []string
	norm := func(s string) string { return strings.ToLower(strings.ReplaceAll(s, "_", "")) }
	var gos []reflect.StructField
	for i := range goType.NumField() {
		if f := goType.Field(i); f.Name != "_" {
			gos = append(gos, f)
		}
	}
	if len(gos) != len(fields) {
		diffs = append(diffs, fmt.Sprintf("%s has %d fields in the kernel source, %s %d in Go: update both sides", cName, len(fields), goType.Name(), len(gos)))
	}
	for i := range min(len(gos), len(fields)) {
		g, c := gos[i], fields[i]
		if norm(g.Name) != norm(c.name) || int(g.Offset) != c.offset || int(g.Type.Size()) != c.size {
			diffs = append(diffs, fmt.Sprintf("%s field %d: C %s at offset %d (%d bytes), Go %s at offset %d (%d bytes)",
				cName, i, c.name, c.offset, c.size, g.Name, g.Offset, g.Type.Size()))
		}
	}
	if int(goType.Size()) != size {
		diffs = append(diffs, fmt.Sprintf("sizeof(%s) = %d, unsafe.Sizeof(%s) = %d", cName, size, goType.Name(), goType.Size()))
	}
	return diffs
}

func checkGoMirror(t *testing.T, goType reflect.Type, cName string, fields []cField, size int) {
	t.Helper()
	for _, d := range mirrorDiffs(goType, cName, fields, size) {
		t.Error(d)
	}
}

// TestMMArgsLayout: mmJob and mmArgs, which the matrix kernels receive by
// value, have the layout of MMJob and MMArgs as the kernel source declares
// them (parsed from the embedded source, laid out by the C rules).
func TestMMArgsLayout(t *testing.T) {
	src := kernels.Source()
	job, jobSize, jobAlign := parseCStruct(t, src, "MMJob", nil)
	checkGoMirror(t, reflect.TypeOf(mmJob{}), "MMJob", job, jobSize)
	args, argsSize, _ := parseCStruct(t, src, "MMArgs", map[string][2]int{"MMJob": {jobSize, jobAlign}})
	checkGoMirror(t, reflect.TypeOf(mmArgs{}), "MMArgs", args, argsSize)
	if n := len(mmArgs{}.Job); args[0].name != "job" || args[0].size != n*jobSize {
		t.Errorf("MMArgs.job is %d bytes, Go has %d jobs", args[0].size, n)
	}
}

// TestParseCStructCatchesDrift: the layout check fails when one side gains
// a field.
func TestParseCStructCatchesDrift(t *testing.T) {
	src := kernels.Source()
	drifted := strings.Replace(src, "int accumulate;", "int accumulate;\n    int extra;", 1)
	if drifted == src {
		t.Fatal("MMJob.accumulate not found in the source")
	}
	fields, size, _ := parseCStruct(t, drifted, "MMJob", nil)
	if len(mirrorDiffs(reflect.TypeOf(mmJob{}), "MMJob", fields, size)) == 0 {
		t.Error("a field added to MMJob in the source went unnoticed")
	}
}
