package gguf

import (
	"fmt"
	"math"
	"strings"
)

// ValueType is the type tag of a GGUF metadata value.
type ValueType uint32

// The 13 GGUF metadata value types, numbered as in the file format.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

var valueTypeNames = [...]string{"uint8", "int8", "uint16", "int16", "uint32", "int32", "float32",
	"bool", "string", "array", "uint64", "int64", "float64"}

func (t ValueType) String() string {
	if int(t) < len(valueTypeNames) {
		return valueTypeNames[t]
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

func (t ValueType) valid() bool { return t <= TypeFloat64 }

// fixedSize is the encoded size of a scalar of type t; 0 for strings and
// arrays, whose size depends on their contents.
func (t ValueType) fixedSize() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	}
	return 0
}

// minSize is the fewest bytes one encoded value of type t can occupy; it
// bounds the counts a file may claim before anything is allocated.
func (t ValueType) minSize() int {
	switch t {
	case TypeString:
		return 8
	case TypeArray:
		return 12
	}
	return t.fixedSize()
}

// Value is one metadata value. Scalars hold the Go type of the same name
// (uint8 … float64, bool, string). Arrays of scalars hold a typed slice
// ([]int32, []string, …); arrays of arrays hold []Value.
type Value struct {
	Type      ValueType
	ArrayType ValueType // element type, when Type == TypeArray
	v         any
}

// Any returns the Go value.
func (v Value) Any() any { return v.v }

// Len returns the element count of an array value, 0 otherwise.
func (v Value) Len() int {
	switch a := v.v.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 0
}

// Index returns element i of an array value as a Value.
func (v Value) Index(i int) Value {
	switch a := v.v.(type) {
	case []uint8:
		return Value{Type: TypeUint8, v: a[i]}
	case []int8:
		return Value{Type: TypeInt8, v: a[i]}
	case []uint16:
		return Value{Type: TypeUint16, v: a[i]}
	case []int16:
		return Value{Type: TypeInt16, v: a[i]}
	case []uint32:
		return Value{Type: TypeUint32, v: a[i]}
	case []int32:
		return Value{Type: TypeInt32, v: a[i]}
	case []float32:
		return Value{Type: TypeFloat32, v: a[i]}
	case []bool:
		return Value{Type: TypeBool, v: a[i]}
	case []string:
		return Value{Type: TypeString, v: a[i]}
	case []uint64:
		return Value{Type: TypeUint64, v: a[i]}
	case []int64:
		return Value{Type: TypeInt64, v: a[i]}
	case []float64:
		return Value{Type: TypeFloat64, v: a[i]}
	case []Value:
		return a[i]
	}
	panic("gguf: Index on a non-array value")
}

// TypeName describes the value's type: "uint32", "array[string]",
// "array[array[int32]]".
func (v Value) TypeName() string {
	if v.Type != TypeArray {
		return v.Type.String()
	}
	if v.ArrayType == TypeArray {
		if a, ok := v.v.([]Value); ok && len(a) > 0 {
			return "array[" + a[0].TypeName() + "]"
		}
		return "array[array]"
	}
	return "array[" + v.ArrayType.String() + "]"
}

// String formats the value for people; long arrays are printed whole.
func (v Value) String() string {
	if v.Type == TypeArray {
		var sb strings.Builder
		sb.WriteByte('[')
		for i := range v.Len() {
			if i > 0 {
				sb.WriteString(", ")
			}
			sb.WriteString(v.Index(i).String())
		}
		sb.WriteByte(']')
		return sb.String()
	}
	if s, ok := v.v.(string); ok {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprint(v.v)
}

// asInt64 returns an integer scalar as int64 (ok false for non-integers and
// uint64 values above MaxInt64).
func (v Value) asInt64() (int64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case int64:
		return x, true
	case uint64:
		if x <= math.MaxInt64 {
			return int64(x), true
		}
	}
	return 0, false
}

// ValueOf converts a Go value to a metadata Value. Accepted: the scalar
// types uint8 … float64, bool, string, int (stored as int32 when it fits,
// else int64), slices of those, []Value (an array of arrays; all elements
// must share a type) and Value itself.
func ValueOf(x any) (Value, error) {
	switch x := x.(type) {
	case Value:
		return x, nil
	case uint8:
		return Value{Type: TypeUint8, v: x}, nil
	case int8:
		return Value{Type: TypeInt8, v: x}, nil
	case uint16:
		return Value{Type: TypeUint16, v: x}, nil
	case int16:
		return Value{Type: TypeInt16, v: x}, nil
	case uint32:
		return Value{Type: TypeUint32, v: x}, nil
	case int32:
		return Value{Type: TypeInt32, v: x}, nil
	case float32:
		return Value{Type: TypeFloat32, v: x}, nil
	case bool:
		return Value{Type: TypeBool, v: x}, nil
	case string:
		return Value{Type: TypeString, v: x}, nil
	case uint64:
		return Value{Type: TypeUint64, v: x}, nil
	case int64:
		return Value{Type: TypeInt64, v: x}, nil
	case float64:
		return Value{Type: TypeFloat64, v: x}, nil
	case int:
		if x >= math.MinInt32 && x <= math.MaxInt32 {
			return Value{Type: TypeInt32, v: int32(x)}, nil
		}
		return Value{Type: TypeInt64, v: int64(x)}, nil
	case []uint8:
		return arrayOf(TypeUint8, x), nil
	case []int8:
		return arrayOf(TypeInt8, x), nil
	case []uint16:
		return arrayOf(TypeUint16, x), nil
	case []int16:
		return arrayOf(TypeInt16, x), nil
	case []uint32:
		return arrayOf(TypeUint32, x), nil
	case []int32:
		return arrayOf(TypeInt32, x), nil
	case []float32:
		return arrayOf(TypeFloat32, x), nil
	case []bool:
		return arrayOf(TypeBool, x), nil
	case []string:
		return arrayOf(TypeString, x), nil
	case []uint64:
		return arrayOf(TypeUint64, x), nil
	case []int64:
		return arrayOf(TypeInt64, x), nil
	case []float64:
		return arrayOf(TypeFloat64, x), nil
	case []int:
		a := make([]int32, len(x))
		for i, e := range x {
			if e < math.MinInt32 || e > math.MaxInt32 {
				return Value{}, fmt.Errorf("gguf: []int element %d (%d) does not fit int32; pass []int64", i, e)
			}
			a[i] = int32(e)
		}
		return arrayOf(TypeInt32, a), nil
	case []Value:
		for i := 1; i < len(x); i++ {
			if x[i].TypeName() != x[0].TypeName() {
				return Value{}, fmt.Errorf("gguf: array of arrays mixes %s (element 0) and %s (element %d)",
					x[0].TypeName(), x[i].TypeName(), i)
			}
		}
		for i, e := range x {
			if e.Type != TypeArray {
				return Value{}, fmt.Errorf("gguf: []Value element %d is a %s; only arrays may be nested", i, e.TypeName())
			}
		}
		return Value{Type: TypeArray, ArrayType: TypeArray, v: x}, nil
	}
	return Value{}, fmt.Errorf("gguf: cannot store a Go %T as metadata", x)
}

func arrayOf(elem ValueType, slice any) Value {
	return Value{Type: TypeArray, ArrayType: elem, v: slice}
}
