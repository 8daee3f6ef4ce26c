// End-to-end check of worker-orcd's OpenAI-compatible API with the official
// openai npm client, unchanged. Run by server/openai_npm_test.go:
//
//   WORKER_URL=http://127.0.0.1:8080 WORKER_API_KEY=k node test.mjs
//
// Exits 0 when every check passes; prints one line per check.
import OpenAI from "openai";
import assert from "node:assert/strict";

const baseURL = (process.env.WORKER_URL ?? "http://127.0.0.1:8080") + "/v1";
const apiKey = process.env.WORKER_API_KEY ?? "none";
const client = new OpenAI({ baseURL, apiKey, maxRetries: 0, timeout: 60_000 });

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

const models = await client.models.list();
const model = models.data[0]?.id;

await check("models.list", async () => {
  assert.equal(models.data.length, 1);
  assert.equal(typeof model, "string");
  const one = await client.models.retrieve(model);
  assert.equal(one.id, model);
});

const messages = [
  { role: "system", content: "You are terse." },
  { role: "user", content: "Say hello." },
];
const greedy = { temperature: 0, max_tokens: 8, ignore_eos: true };
let chatText;

await check("chat non-stream", async () => {
  const r = await client.chat.completions.create({ model, messages, ...greedy, seed: 1 });
  assert.equal(r.object, "chat.completion");
  assert.equal(r.choices.length, 1);
  assert.equal(r.choices[0].message.role, "assistant");
  assert.equal(typeof r.choices[0].message.content, "string");
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 8);
  chatText = r.choices[0].message.content;
});

await check("chat stream with include_usage", async () => {
  const stream = await client.chat.completions.create({
    model, messages, ...greedy, stream: true, stream_options: { include_usage: true },
  });
  let text = "", finish = null, usage = null, chunks = 0;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, "chat.completion.chunk");
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      text += c.delta?.content ?? "";
      if (c.finish_reason) finish = c.finish_reason;
    }
  }
  assert.ok(chunks >= 3, `only ${chunks} chunks`);
  assert.equal(text, chatText);
  assert.equal(finish, "length");
  assert.equal(usage?.completion_tokens, 8);
});

await check("chat stream helper (runner) and logprobs", async () => {
  const runner = client.chat.completions.stream({
    model, messages, ...greedy, logprobs: true, top_logprobs: 2,
  });
  const final = await runner.finalChatCompletion();
  assert.equal(final.choices[0].message.content, chatText);
  assert.ok(final.choices[0].logprobs.content.length >= 1);
});

let completionText;
await check("completions non-stream", async () => {
  const r = await client.completions.create({ model, prompt: "Once upon a time", ...greedy, logprobs: 2 });
  assert.equal(r.object, "text_completion");
  assert.equal(r.choices[0].finish_reason, "length");
  assert.equal(r.usage.completion_tokens, 8);
  assert.equal(r.choices[0].logprobs.tokens.length, 8);
  completionText = r.choices[0].text;
});

await check("completions stream", async () => {
  const stream = await client.completions.create({
    model, prompt: "Once upon a time", ...greedy, stream: true, stream_options: { include_usage: true },
  });
  let text = "", usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) text += c.text;
  }
  assert.equal(text, completionText);
  assert.equal(usage?.completion_tokens, 8);
});

// WORKER_TOKEN_A: the id of the token "a" (its piece is "a").
const tokenA = process.env.WORKER_TOKEN_A;
await check("logit_bias +100 forces a token, -100 bans it", async () => {
  assert.ok(tokenA, "WORKER_TOKEN_A is not set");
  const forced = await client.completions.create({
    model, prompt: "Once upon a time", max_tokens: 6, ignore_eos: true, temperature: 1, seed: 3,
    logit_bias: { [tokenA]: 100 },
  });
  assert.equal(forced.choices[0].text, "a".repeat(6));
  const banned = await client.chat.completions.create({
    model, messages, max_tokens: 6, ignore_eos: true, temperature: 0, logprobs: true,
    logit_bias: { [tokenA]: -100 },
  });
  assert.ok(!banned.choices[0].logprobs.content.some((t) => t.token === "a"));
});

await check("presence and frequency penalties, top_p 0, user", async () => {
  const plain = await client.completions.create({ model, prompt: "Once upon a time", ...greedy });
  const penalized = await client.completions.create({
    model, prompt: "Once upon a time", ...greedy, presence_penalty: 2, frequency_penalty: 2, user: "client-test",
  });
  assert.notEqual(penalized.choices[0].text, plain.choices[0].text);
  for (const seed of [1, 2]) {
    const r = await client.completions.create({
      model, prompt: "Once upon a time", max_tokens: 8, ignore_eos: true, temperature: 1.5, top_p: 0, seed,
    });
    assert.equal(r.choices[0].text, plain.choices[0].text);
  }
  await assert.rejects(
    client.completions.create({ model, prompt: "x", presence_penalty: 3 }),
    (err) => err instanceof OpenAI.BadRequestError && err.param === "presence_penalty",
  );
});

await check("embeddings: float and base64 agree; alone or batched", async () => {
  const text = "The quick brown fox";
  const asFloat = await client.embeddings.create({ model, input: text, encoding_format: "float" });
  // Without encoding_format the client asks for base64 and decodes it.
  const asBase64 = await client.embeddings.create({ model, input: text });
  const batched = await client.embeddings.create({ model, input: ["other", text, text], encoding_format: "float" });
  const v = asFloat.data[0].embedding;
  assert.ok(v.length > 0);
  // JSON carries each float32 in its shortest form, base64 its exact bits:
  // the same float32 values.
  assert.deepEqual(Array.from(asBase64.data[0].embedding, Math.fround), v.map(Math.fround));
  assert.deepEqual(batched.data[1].embedding, v);
  assert.deepEqual(batched.data[2].embedding, v);
  assert.notDeepEqual(batched.data[0].embedding, v);
  assert.equal(batched.data.length, 3);
  assert.ok(Math.abs(v.reduce((s, x) => s + x * x, 0) - 1) < 1e-5);
  assert.ok(asFloat.usage.prompt_tokens > 0);
});

const personSchema = {
  type: "object",
  properties: {
    name: { type: "string", maxLength: 12 },
    age: { type: "integer" },
    role: { enum: ["admin", "user"] },
    tags: { type: "array", items: { type: "string", maxLength: 5 }, maxItems: 3 },
  },
  required: ["name", "age", "role", "tags"],
  additionalProperties: false,
};

// validPerson checks a value against personSchema by hand (independent of
// the worker's grammar code).
function validPerson(v) {
  assert.equal(typeof v, "object");
  assert.deepEqual(Object.keys(v).sort(), ["age", "name", "role", "tags"]);
  assert.equal(typeof v.name, "string");
  assert.ok([...v.name].length <= 12);
  assert.ok(Number.isInteger(v.age));
  assert.ok(["admin", "user"].includes(v.role));
  assert.ok(Array.isArray(v.tags) && v.tags.length <= 3);
  for (const t of v.tags) assert.ok(typeof t === "string" && [...t].length <= 5);
}

await check("response_format json_schema: valid JSON, stream and non-stream agree", async () => {
  for (const seed of [1, 2, 3]) {
    const req = {
      model, messages: [{ role: "user", content: "A person as JSON." }], temperature: 1, seed, max_tokens: 200,
      response_format: { type: "json_schema", json_schema: { name: "person", strict: true, schema: personSchema } },
    };
    const r = await client.chat.completions.create(req);
    const text = r.choices[0].message.content;
    validPerson(JSON.parse(text));
    assert.equal(r.choices[0].finish_reason, "stop");
    const stream = await client.chat.completions.create({ ...req, stream: true });
    let streamed = "";
    for await (const chunk of stream) streamed += chunk.choices[0]?.delta?.content ?? "";
    assert.equal(streamed, text);
  }
});

await check("response_format json_object", async () => {
  const r = await client.chat.completions.create({
    model, messages: [{ role: "user", content: "JSON." }], temperature: 1, seed: 4, max_tokens: 200,
    response_format: { type: "json_object" },
  });
  const v = JSON.parse(r.choices[0].message.content);
  assert.ok(v !== null && typeof v === "object" && !Array.isArray(v));
});

const tools = [
  {
    type: "function",
    function: {
      name: "get_weather", description: "Current weather of a city",
      parameters: {
        type: "object",
        properties: { city: { type: "string", maxLength: 10 }, unit: { enum: ["c", "f"] } },
        required: ["city", "unit"], additionalProperties: false,
      },
    },
  },
];

await check("tools with tool_choice required: arguments validate, stream and non-stream agree", async () => {
  for (const seed of [1, 2]) {
    const req = {
      model, messages: [{ role: "user", content: "Weather in Paris?" }], tools, tool_choice: "required",
      temperature: 1, seed, max_tokens: 300,
    };
    const r = await client.chat.completions.create(req);
    const msg = r.choices[0].message;
    assert.equal(r.choices[0].finish_reason, "tool_calls");
    assert.equal(msg.content, null);
    assert.ok(msg.tool_calls.length >= 1);
    for (const call of msg.tool_calls) {
      assert.equal(call.type, "function");
      assert.equal(call.function.name, "get_weather");
      const args = JSON.parse(call.function.arguments);
      assert.deepEqual(Object.keys(args).sort(), ["city", "unit"]);
      assert.ok(typeof args.city === "string" && [...args.city].length <= 10);
      assert.ok(["c", "f"].includes(args.unit));
    }
    // The stream: tool call deltas accumulated by index, as clients do.
    const stream = await client.chat.completions.create({ ...req, stream: true });
    const calls = [];
    let finish = null;
    for await (const chunk of stream) {
      const c = chunk.choices[0];
      if (!c) continue;
      for (const d of c.delta?.tool_calls ?? []) {
        calls[d.index] ??= { name: "", arguments: "" };
        calls[d.index].name += d.function?.name ?? "";
        calls[d.index].arguments += d.function?.arguments ?? "";
      }
      finish = c.finish_reason ?? finish;
    }
    assert.equal(finish, "tool_calls");
    assert.deepEqual(calls, msg.tool_calls.map((c) => ({ name: c.function.name, arguments: c.function.arguments })));
    // The call and its result go back into the conversation.
    const next = await client.chat.completions.create({
      model, temperature: 0, max_tokens: 4, tools,
      messages: [...req.messages, msg, { role: "tool", tool_call_id: msg.tool_calls[0].id, content: "21 C" }],
    });
    assert.equal(next.choices[0].message.role, "assistant");
  }
});

await check("n = 2: choices by index, stream helper and non-stream agree, seeded choice i is seed + i", async () => {
  const r = await client.chat.completions.create({ model, messages, ...greedy, n: 2 });
  assert.deepEqual(r.choices.map((c) => c.index), [0, 1]);
  for (const c of r.choices) {
    assert.equal(c.message.content, chatText);
    assert.equal(c.finish_reason, "length");
  }
  assert.equal(r.usage.completion_tokens, 16);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + 16);
  const runner = client.chat.completions.stream({ model, messages, ...greedy, n: 2 });
  const final = await runner.finalChatCompletion();
  assert.deepEqual(final.choices.map((c) => [c.index, c.message.content, c.finish_reason]),
    [[0, chatText, "length"], [1, chatText, "length"]]);
  const seeded = { model, prompt: "Once upon a time", max_tokens: 6, temperature: 1, ignore_eos: true };
  const two = await client.completions.create({ ...seeded, seed: 9, n: 2 });
  const alone = await client.completions.create({ ...seeded, seed: 10 });
  assert.equal(two.choices.length, 2);
  assert.equal(two.choices[1].text, alone.choices[0].text);
  assert.notEqual(two.choices[0].text, two.choices[1].text);
});

await check("bad request is an APIError 400", async () => {
  await assert.rejects(
    client.chat.completions.create({ model, messages, n: 17 }),
    (err) => err instanceof OpenAI.BadRequestError && err.status === 400 && err.param === "n",
  );
});

await check("wrong key is an AuthenticationError", async () => {
  if (apiKey === "none") return;
  const bad = new OpenAI({ baseURL, apiKey: apiKey + "x", maxRetries: 0 });
  await assert.rejects(bad.models.list(), (err) => err instanceof OpenAI.AuthenticationError);
});

console.log(failed === 0 ? "all checks passed" : `${failed} checks failed`);
process.exit(failed === 0 ? 0 : 1);
