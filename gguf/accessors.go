package gguf

import (
	"math"
)

// Get returns the value of a metadata key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// Has reports whether a metadata key is present.
func (f *File) Has(key string) bool {
	_, ok := f.kvIndex[key]
	return ok
}

// Architecture returns general.architecture, or "" when absent.
func (f *File) Architecture() string {
	s, _ := f.String("general.architecture")
	return s
}

func notFound(key string) error {
	return errNoOffset(ErrKeyNotFound, "Metadata key not found: %s", quoteKey(key))
}

func wrongType(key string, v Value, want string) error {
	return errNoOffset(ErrWrongType, "metadata key %s has type %s, want %s", quoteKey(key), v.TypeName(), want)
}

func (f *File) lookup(key string) (Value, error) {
	v, ok := f.Get(key)
	if !ok {
		return Value{}, notFound(key)
	}
	return v, nil
}

// intIn returns an integer scalar key converted to the range [lo, hi]. Any
// integer type is accepted when the value fits: converters differ in which
// width they write.
func (f *File) intIn(key string, lo, hi int64, want string) (int64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	x, ok := v.asInt64()
	if !ok {
		if u, isU := v.v.(uint64); isU && hi == math.MaxInt64 {
			return 0, errNoOffset(ErrWrongType, "metadata key %s is %d, more than the %s maximum", quoteKey(key), u, want)
		}
		return 0, wrongType(key, v, want)
	}
	if x < lo || x > hi {
		return 0, errNoOffset(ErrWrongType, "metadata key %s is %d, outside the %s range [%d, %d]", quoteKey(key), x, want, lo, hi)
	}
	return x, nil
}

// Uint32 returns an integer key as uint32.
func (f *File) Uint32(key string) (uint32, error) {
	x, err := f.intIn(key, 0, math.MaxUint32, "uint32")
	return uint32(x), err
}

// Int32 returns an integer key as int32.
func (f *File) Int32(key string) (int32, error) {
	x, err := f.intIn(key, math.MinInt32, math.MaxInt32, "int32")
	return int32(x), err
}

// Int64 returns an integer key as int64.
func (f *File) Int64(key string) (int64, error) {
	return f.intIn(key, math.MinInt64, math.MaxInt64, "int64")
}

// Uint64 returns an integer key as uint64.
func (f *File) Uint64(key string) (uint64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	if u, ok := v.v.(uint64); ok {
		return u, nil
	}
	x, err := f.intIn(key, 0, math.MaxInt64, "uint64")
	return uint64(x), err
}

// Float32 returns a float key (float32, or float64 narrowed) as float32.
func (f *File) Float32(key string) (float32, error) {
	x, err := f.Float64(key)
	return float32(x), err
}

// Float64 returns a float key as float64.
func (f *File) Float64(key string) (float64, error) {
	v, err := f.lookup(key)
	if err != nil {
		return 0, err
	}
	switch x := v.v.(type) {
	case float32:
		return float64(x), nil
	case float64:
		return x, nil
	}
	return 0, wrongType(key, v, "float32 or float64")
}

// Bool returns a bool key.
func (f *File) Bool(key string) (bool, error) {
	v, err := f.lookup(key)
	if err != nil {
		return false, err
	}
	if b, ok := v.v.(bool); ok {
		return b, nil
	}
	return false, wrongType(key, v, "bool")
}

// String returns a string key.
func (f *File) String(key string) (string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return "", err
	}
	if s, ok := v.v.(string); ok {
		return s, nil
	}
	return "", wrongType(key, v, "string")
}

// Strings returns an array-of-strings key. The slice is shared with the
// File; do not modify it.
func (f *File) Strings(key string) ([]string, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	if s, ok := v.v.([]string); ok {
		return s, nil
	}
	return nil, wrongType(key, v, "array[string]")
}

// Float32s returns an array-of-float32 key. The slice is shared with the
// File; do not modify it.
func (f *File) Float32s(key string) ([]float32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	if s, ok := v.v.([]float32); ok {
		return s, nil
	}
	return nil, wrongType(key, v, "array[float32]")
}

// Int32s returns an array of integers as a new []int32. Any integer element
// type is accepted when every element fits.
func (f *File) Int32s(key string) ([]int32, error) {
	v, err := f.lookup(key)
	if err != nil {
		return nil, err
	}
	if v.Type != TypeArray || v.ArrayType == TypeArray || v.ArrayType == TypeString ||
		v.ArrayType == TypeBool || v.ArrayType == TypeFloat32 || v.ArrayType == TypeFloat64 {
		return nil, wrongType(key, v, "array of integers")
	}
	out := make([]int32, v.Len())
	for i := range out {
		x, _ := v.Index(i).asInt64()
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, errNoOffset(ErrWrongType, "metadata key %s element %d is %d, outside the int32 range", quoteKey(key), i, x)
		}
		out[i] = int32(x)
	}
	return out, nil
}
