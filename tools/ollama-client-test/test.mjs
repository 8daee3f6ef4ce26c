// End-to-end check of worker-orcd's Ollama API with the official ollama npm
// client, unchanged. Run by server/ollama_npm_test.go:
//
//   WORKER_URL=http://127.0.0.1:8080 WORKER_API_KEY=k node test.mjs
//
// Exits 0 when every check passes; prints one line per check.
import { Ollama } from "ollama";
import assert from "node:assert/strict";

const host = process.env.WORKER_URL ?? "http://127.0.0.1:8080";
const apiKey = process.env.WORKER_API_KEY;
const headers = apiKey ? { Authorization: `Bearer ${apiKey}` } : {};
const ollama = new Ollama({ host, headers });

let failed = 0;
async function check(name, fn) {
  try {
    await fn();
    console.log(`ok   ${name}`);
  } catch (err) {
    failed++;
    console.log(`FAIL ${name}: ${err?.stack ?? err}`);
  }
}

let model;
await check("list", async () => {
  const r = await ollama.list();
  assert.equal(r.models.length, 1);
  model = r.models[0].name;
  assert.equal(typeof model, "string");
  assert.equal(r.models[0].details.format, "gguf");
  assert.ok(r.models[0].size > 0);
});

await check("version", async () => {
  const v = await ollama.version();
  assert.match(v.version, /^\d+\.\d+\.\d+$/);
});

await check("show", async () => {
  const s = await ollama.show({ model });
  assert.ok(s.capabilities.includes("completion"));
  assert.equal(typeof s.model_info["general.architecture"], "string");
  assert.ok(s.details.parameter_size.length > 0);
});

await check("ps", async () => {
  const r = await ollama.ps();
  assert.equal(r.models[0].name, model);
});

const greedy = { temperature: 0, num_predict: 8, repeat_penalty: 1 };
let generated;
await check("generate non-stream", async () => {
  const r = await ollama.generate({ model, prompt: "Once upon a time", raw: true, options: greedy });
  assert.equal(r.done, true);
  assert.ok(["stop", "length"].includes(r.done_reason));
  assert.equal(typeof r.response, "string");
  assert.ok(r.eval_count >= 1 && r.eval_count <= 8);
  assert.ok(r.prompt_eval_count > 0);
  assert.ok(r.total_duration > 0 && r.eval_duration >= 0);
  assert.ok(Array.isArray(r.context) && r.context.length === r.prompt_eval_count + r.eval_count);
  generated = r.response;
});

await check("generate stream", async () => {
  const stream = await ollama.generate({ model, prompt: "Once upon a time", raw: true, options: greedy, stream: true });
  let text = "", last;
  for await (const part of stream) {
    text += part.response;
    last = part;
  }
  assert.equal(text, generated);
  assert.equal(last.done, true);
  assert.ok(last.eval_count >= 1);
});

const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Say hello." },
];
let chatText;
await check("chat non-stream", async () => {
  const r = await ollama.chat({ model, messages, options: greedy, keep_alive: "5m" });
  assert.equal(r.done, true);
  assert.equal(r.message.role, "assistant");
  assert.equal(typeof r.message.content, "string");
  chatText = r.message.content;
});

await check("chat stream", async () => {
  const stream = await ollama.chat({ model, messages, options: greedy, stream: true });
  let text = "", parts = 0, last;
  for await (const part of stream) {
    parts++;
    text += part.message.content;
    last = part;
  }
  assert.equal(text, chatText);
  assert.equal(last.done, true);
  assert.ok(parts >= 2);
});

await check("chat with penalties and a seed", async () => {
  const opts = { temperature: 0.9, seed: 7, num_predict: 6, presence_penalty: 1.5, frequency_penalty: 0.5, top_k: 20 };
  const a = await ollama.chat({ model, messages, options: opts });
  const b = await ollama.chat({ model, messages, options: opts });
  assert.equal(a.message.content, b.message.content);
});

await check("embed", async () => {
  const one = await ollama.embed({ model, input: "The quick brown fox" });
  const many = await ollama.embed({ model, input: ["other", "The quick brown fox"] });
  assert.equal(one.embeddings.length, 1);
  assert.equal(many.embeddings.length, 2);
  assert.deepEqual(many.embeddings[1], one.embeddings[0]);
  const v = one.embeddings[0];
  assert.ok(Math.abs(v.reduce((s, x) => s + x * x, 0) - 1) < 1e-5);
  assert.ok(one.prompt_eval_count > 0);
});

await check("errors are ResponseErrors", async () => {
  await assert.rejects(
    ollama.generate({ model, prompt: "x", options: { temperature: "hot" } }),
    (err) => err.name === "ResponseError" && err.status_code === 400 && /options\.temperature/.test(err.error),
  );
  await assert.rejects(
    ollama.chat({ model, messages, format: "yaml" }),
    (err) => err.name === "ResponseError" && err.status_code === 400 && /format/.test(err.error),
  );
});

await check("format json and a JSON schema", async () => {
  const r = await ollama.chat({ model, messages, format: "json", options: { seed: 5, num_predict: 200 } });
  assert.equal(typeof JSON.parse(r.message.content), "object");
  const schema = { type: "object", properties: { ok: { type: "boolean" }, n: { type: "integer" } }, required: ["ok", "n"] };
  const g = await ollama.generate({ model, prompt: "x", format: schema, options: { seed: 5, num_predict: 200 } });
  const v = JSON.parse(g.response);
  assert.equal(typeof v.ok, "boolean");
  assert.ok(Number.isInteger(v.n));
});

console.log(failed === 0 ? "all checks passed" : `${failed} checks failed`);
process.exit(failed === 0 ? 0 : 1);
