package engine

import "worker-orcd/tokenizer"

// encodeDefaults is how a plain prompt is tokenized: BOS/EOS as the model's
// metadata asks, special tokens in the text parsed (as llama.cpp's
// /completion does).
var encodeDefaults = tokenizer.EncodeOptions{AddSpecial: true, ParseSpecial: true}
