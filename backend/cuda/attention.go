package cuda

import "fmt"

// Launchers of kernels/attention.cu: attention split over the positions
// (flash-decoding), prompt rows on the tensor cores, and the merge of the
// splits.

// maxHeadDim is MAX_HD of attention.cu: a lane holds four head elements
// (4·lane … 4·lane+3) in registers; head dimensions are multiples of 4.
const maxHeadDim = 128

// attWarps is ATT_WARPS of attention.cu: the warps of an attention_split block.
const attWarps = 4

// maxMergeSplits is the most splits attention_merge_f32 combines (its
// shared scale[64]).
const maxMergeSplits = 64

func checkSplits(kernel string, n int) error {
	if n < 1 || n > maxMergeSplits {
		return fmt.Errorf("%w: %s: %d splits (want 1 … %d)", ErrLaunch, kernel, n, maxMergeSplits)
	}
	return nil
}

// attentionSplit launches attention_split_<kvType>: for each row t and head
// h, split s of the positions first..pos[t] (first = pos[t]-window+1 with a
// sliding window, else 0) gives a partial (max, sum, acc[hd]) in part
// [T, n_head, splits, hd+2], reading layer's keys and values through each
// row's block table (tabs: a device pointer a row; see kvcache.go).
//
//	grid (T, n_head, splits), block 128
func (d *Device) attentionSplit(kvType string, q, part, tabs, pos devicePtr, layer, T int, s headShape, window int, scale float32, splits int) error {
	kernel := "attention_split_" + kvType
	if err := s.check(kernel); err != nil {
		return err
	}
	if err := checkLayer(kernel, layer); err != nil {
		return err
	}
	if err := checkSplits(kernel, splits); err != nil {
		return err
	}
	if window < 0 {
		return fmt.Errorf("%w: %s: sliding window %d", ErrLaunch, kernel, window)
	}
	if s.headDim%4 != 0 {
		return fmt.Errorf("%w: %s: head dimension %d is not a multiple of 4 (a lane reads four elements)", ErrLaunch, kernel, s.headDim)
	}
	return d.launch(kernel, dims(T, s.nHead, splits), dims(32*attWarps, 1, 1), 0,
		newArgs().dev("q", q).dev("part", part).dev("tabs", tabs).i32("layer", layer).dev("pos", pos).
			i32("n_head", s.nHead).i32("n_kv", s.nKV).i32("hd", s.headDim).i32("window", window).f32("scale", scale).i32("nsplit", splits))
}

// attentionMerge launches attention_merge_f32: out[t, h] combines the splits'
// partials of part (and an F16 copy into out16 when set).
//
//	grid (T, n_head), block 128
func (d *Device) attentionMerge(part, out, out16 devicePtr, T, nHead, headDim, splits int) error {
	if err := checkSplits("attention_merge_f32", splits); err != nil {
		return err
	}
	if headDim < 1 || headDim > maxHeadDim {
		return fmt.Errorf("%w: attention_merge_f32: head dimension %d (want 1 … %d)", ErrLaunch, headDim, maxHeadDim)
	}
	return d.launch("attention_merge_f32", dims(T, nHead, 1), dims(128, 1, 1), 0,
		newArgs().dev("part", part).dev("out", out).i32("n_head", nHead).i32("hd", headDim).i32("nsplit", splits).ptr("out16", out16))
}

// faWarps is FA_WARPS of attention.cu: the warps of an attention_prompt
// block, 16 rows each.
const faWarps = 4

// promptHeadDim reports whether attention_prompt_hd<headDim> exists.
func promptHeadDim(headDim int) bool { return headDim == 64 || headDim == 96 || headDim == 128 }

// attentionPrompt launches attention_prompt_hd<hd> (F16 cache, sm_80+):
// for each of T prompt rows and head h, the partials (max, sum, acc[hd])
// of up to splits shares of the positions first..pos[t] of the row's own
// cache (layer's keys and values through the row's block table, tabs: a
// pointer a row) into part [T, n_head, splits, hd+2], on the tensor cores;
// attentionMerge combines them.
//
//	grid (ceil(T/64), n_head, splits), block 128
func (d *Device) attentionPrompt(q, part, tabs, pos devicePtr, layer, T int, s headShape, window int, scale float32, splits int) error {
	kernel := fmt.Sprintf("attention_prompt_hd%d", s.headDim)
	if err := s.check(kernel); err != nil {
		return err
	}
	if err := checkLayer(kernel, layer); err != nil {
		return err
	}
	if !promptHeadDim(s.headDim) {
		return fmt.Errorf("%w: %s: head dimension %d (want 64, 96 or 128)", ErrLaunch, kernel, s.headDim)
	}
	if err := checkSplits(kernel, splits); err != nil {
		return err
	}
	if window < 0 || T < 1 {
		return fmt.Errorf("%w: %s: %d rows, sliding window %d", ErrLaunch, kernel, T, window)
	}
	if d.Arch() < 80 {
		return fmt.Errorf("%w: %s needs tensor cores (sm_80 or later); this card is sm_%d", ErrLaunch, kernel, d.Arch())
	}
	return d.launch(kernel, dims(blocks(T, 16*faWarps), s.nHead, splits), dims(32*faWarps, 1, 1), 0,
		newArgs().dev("q", q).dev("part", part).dev("tabs", tabs).i32("layer", layer).dev("pos", pos).
			i32("T", T).i32("n_head", s.nHead).i32("n_kv", s.nKV).i32("window", window).f32("scale", scale).i32("nsplit", splits))
}
