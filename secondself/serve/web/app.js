// The secondself web app: one page, six views, talking only to the server it came from.
// Plain ES module, no build step and no external URL. Server text is only ever set as textContent (through
// `h()` below), never parsed as HTML.

const $ = (sel, root = document) => root.querySelector(sel);
const $$ = (sel, root = document) => [...root.querySelectorAll(sel)];
const SVG = "http://www.w3.org/2000/svg";
const VIEWS = ["chat", "memories", "profile", "training", "settings", "spaces"];
const FINISHED = new Set(["done", "failed", "cancelled"]);
const state = { auth: "open", token: sessionStorage.getItem("secondself.token") || "", view: "chat",
  conversation: null, adapters: [], abort: null, space: null };

// -- DOM helpers ---------------------------------------------------------------------------------------

/** Build an element: attributes from `attrs` (on* keys become listeners), children as nodes or text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "text") el.textContent = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false)
    el.append(c instanceof Node ? c : String(c));
  return el;
}

function svg(tag, attrs = {}, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

const when = (iso) => (iso ? String(iso).replace("T", " ").slice(0, 16) : "");
const num = (x, d = 3) => (typeof x === "number" ? (Number.isInteger(x) ? String(x) : x.toFixed(d)) : x ?? "");
const announce = (text) => { $("#live").textContent = text; };

function showError(err) {
  const box = $("#error");
  if (!err) { box.hidden = true; box.textContent = ""; return; }
  box.textContent = err.message || String(err);
  box.hidden = false;
}

function dl(el, pairs) {
  el.replaceChildren(...pairs.filter(([, v]) => v !== "" && v !== null && v !== undefined)
    .flatMap(([k, v]) => [h("dt", { text: k }), h("dd", { text: v })]));
}

// -- the API -------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `request failed (HTTP ${status})`);
    this.status = status; this.code = e.code || ""; this.type = e.type || "";
  }
}

function headers(extra = {}) {
  return state.token ? { ...extra, Authorization: `Bearer ${state.token}` } : extra;
}

/** fetch() with the token; JSON bodies for plain objects; throws ApiError (401 opens the token form). */
async function request(path, { method = "GET", body, signal } = {}) {
  const sent = state.token;
  const init = { method, headers: headers(), signal };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) { init.body = JSON.stringify(body); init.headers["Content-Type"] = "application/json"; }
  const res = await fetch(path, init);
  if (!res.ok) {
    const data = await res.json().catch(() => null);
    const err = new ApiError(res.status, data);
    // a late answer to a request made with an older token must not reopen the form for a newer one
    if (res.status === 401 && sent === state.token) needToken(state.token ? "The server refused this token." : "");
    throw err;
  }
  return res;
}

const api = async (path, opts) => {
  const res = await request(path, opts);
  return res.status === 204 ? null : res.json();
};

/** Server-sent events from a fetch() response (EventSource cannot send the Authorization header). */
async function* sse(res) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value.replace(/\r\n?/g, "\n");
    let i;
    while ((i = buf.indexOf("\n\n")) >= 0) {
      const block = buf.slice(0, i); buf = buf.slice(i + 2);
      let event = "message"; const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

// -- token -------------------------------------------------------------------------------------------

function needToken(problem) {
  const form = $("#token-form");
  $("#token-problem").textContent = problem || "";
  $("#token-problem").hidden = !problem;
  form.hidden = false;
  $("#token-input").focus();
}

function setToken(token) {
  state.token = token;
  if (token) sessionStorage.setItem("secondself.token", token);
  else sessionStorage.removeItem("secondself.token");
}

function readFragment() {
  const frag = location.hash.replace(/^#/, "");
  if (!frag.includes("=")) return VIEWS.includes(frag) ? frag : null;
  const params = new URLSearchParams(frag);
  if (params.get("token")) setToken(params.get("token"));
  const view = params.get("view");
  history.replaceState(null, "", location.pathname + location.search + (VIEWS.includes(view) ? `#${view}` : ""));
  return VIEWS.includes(view) ? view : null;
}

// -- views ---------------------------------------------------------------------------------------------

function show(view, { focus = false } = {}) {
  if (!VIEWS.includes(view)) view = "chat";
  state.view = view;
  for (const v of VIEWS) $(`#view-${v}`).hidden = v !== view;
  for (const b of $$("nav [data-view]")) b.setAttribute("aria-current", b.dataset.view === view ? "page" : "false");
  if (location.hash !== `#${view}`) history.replaceState(null, "", `#${view}`);
  if (focus) { const head = $(`#view-${view} h2`); head.tabIndex = -1; head.focus(); }
  if (state.auth === "token" && !state.token) return;
  load(view);  // every visit re-reads: the server is local, and jobs change things behind our back
}

function load(view) {
  const loaders = { chat: loadChat, memories: loadMemories, profile: loadProfile, training: loadTraining,
    settings: loadSettings, spaces: loadSpaces };
  showError(null);
  return loaders[view]().catch((e) => { if (e.status !== 401) showError(e); });
}

// -- jobs ----------------------------------------------------------------------------------------------

function jobLine(job) {
  const p = job.progress || {};
  const parts = [`${job.kind} ${job.status}`];
  if (p.stage) parts.push(p.stage);
  if (p.steps) parts.push(`step ${p.step ?? 0}/${p.steps}`);
  else if (p.total) parts.push(`${p.done ?? 0}/${p.total}`);
  if (typeof p.loss === "number") parts.push(`loss ${p.loss.toFixed(3)}`);
  if (p.tokens_per_s) parts.push(`${Math.round(p.tokens_per_s)} tok/s`);
  if (typeof p.eta_s === "number" && job.status === "running") parts.push(`about ${Math.ceil(p.eta_s)} s left`);
  return parts.join(" · ");
}

function resultLine(job) {
  if (job.status === "failed") return job.error || "failed";
  const r = job.result;
  if (!r || typeof r !== "object") return job.note || "";
  if (job.kind === "train") return `adapter ${r.version} trained and in use` + (job.note ? ` — ${job.note}` : "");
  const failed = Array.isArray(r.failed) && r.failed.length
    ? ` — could not read: ${r.failed.map((f) => `${f.path} (${f.reason})`).join("; ")}` : "";
  return Object.entries(r).filter(([, v]) => ["string", "number", "boolean"].includes(typeof v))
    .map(([k, v]) => `${k.replace(/_/g, " ")}: ${v}`).join(", ") + failed + (job.note ? ` — ${job.note}` : "");
}

/** Render a job into its indicator box: a <progress> bar and a status line. */
function renderJob(box, job) {
  box.hidden = false;
  box.dataset.status = job.status;
  let bar = $("progress", box), line = $(".job-line", box), extra = $(".job-result", box);
  if (!bar) {
    bar = h("progress", { "data-testid": `${box.id}-progress`, "aria-label": `${job.kind} progress` });
    line = h("span", { class: "job-line", "data-testid": `${box.id}-status` });
    extra = h("span", { class: "job-result", "data-testid": `${box.id}-result` });
    box.replaceChildren(bar, line, extra);
  }
  const p = job.progress || {};
  const [done, total] = p.steps ? [p.step || 0, p.steps] : [p.done || 0, p.total || 0];
  if (job.status === "done") { bar.max = 1; bar.value = 1; }
  else if (total) { bar.max = total; bar.value = Math.min(done, total); }
  else bar.removeAttribute("value");
  line.textContent = jobLine(job);
  extra.textContent = FINISHED.has(job.status) ? resultLine(job) : "";
  extra.classList.toggle("error-text", job.status === "failed");
  if (box.id === "train-job") renderTrainJob(job);
}

/** Follow a job's event stream until it finishes, calling `onUpdate(job)` on every change. Falls back to
 * polling when the stream breaks. Resolves with the finished job. */
async function watchJob(id, onUpdate) {
  let job = null;
  try {
    const res = await request(`/api/jobs/${encodeURIComponent(id)}/events`);
    for await (const { event, data } of sse(res)) {
      if (event === "end") break;
      if (event === "job" || event === "message") { job = JSON.parse(data); onUpdate(job); }
      if (job && FINISHED.has(job.status)) break;
    }
  } catch (e) {
    if (e.status === 401) throw e;
  }
  while (!job || !FINISHED.has(job.status)) {
    job = await api(`/api/jobs/${encodeURIComponent(id)}`);
    onUpdate(job);
    if (!FINISHED.has(job.status)) await new Promise((r) => setTimeout(r, 1000));
  }
  return job;
}

/** Show a job in `box` until it ends (`onUpdate(job)` hears of each change too); announce the end; then run
 * `after(job)`. */
async function followJob(job, box, after, onUpdate) {
  renderJob(box, job);
  announce(`${job.kind} started`);
  const final = await watchJob(job.id, (j) => { renderJob(box, j); if (onUpdate) onUpdate(j); });
  renderJob(box, final);
  announce(`${final.kind} ${final.status}${final.error ? ": " + final.error : ""}`);
  if (after) await after(final);
  return final;
}

async function resumeJobs() {
  const { data } = await api("/api/jobs");
  for (const job of data.filter((j) => !FINISHED.has(j.status))) {
    if (job.kind === "ingest") followJob(job, $("#ingest-job"), () => loadMemories()).catch(showError);
    if (job.kind === "build") followJob(job, $("#build-job"), () => loadProfile()).catch(showError);
    if (job.kind === "train") followTraining(job).catch(showError);
    if (job.kind === "space") followSpace(job).catch(showError);
  }
}

// -- chat ----------------------------------------------------------------------------------------------

async function loadChat() {
  const [models, convs] = await Promise.all([api("/v1/models"), api("/api/conversations")]);
  const select = $("#model-select");
  const keep = select.value || localStorage.getItem("secondself.model") || "secondself";
  select.replaceChildren(...models.data.map((m) => h("option", { value: m.id, text: m.id })));
  if (models.data.some((m) => m.id === keep)) select.value = keep;
  renderConversations(convs.data);
}

function renderConversations(list) {
  $("#conversation-list").replaceChildren(...list.map((c) => h("li", {},
    h("button", { type: "button", class: "link", "data-id": c.id, "aria-current": c.id === state.conversation ? "true" : "false",
      onclick: () => openConversation(c.id).catch(showError) },
    c.title || `Conversation ${c.id}`, h("span", { class: "muted small block", text: when(c.updated_at) })))));
}

async function refreshConversations() {
  renderConversations((await api("/api/conversations")).data);
}

function newConversation() {
  state.conversation = null;
  $("#messages").replaceChildren();
  $("#citation-panel").hidden = true;
  $$("#conversation-list button").forEach((b) => b.setAttribute("aria-current", "false"));
  $("#chat-input").focus();
}

async function openConversation(id) {
  const conv = await api(`/api/conversations/${encodeURIComponent(id)}`);
  state.conversation = conv.id ?? id;
  $("#messages").replaceChildren(...conv.turns.map((t) => {
    const m = message(t.role);
    if (t.role === "assistant") finishAnswer(m, t.content, t.citations || [],
      t.status && t.status !== "complete" ? `(${t.status})` : "");
    else m.body.textContent = t.content;
    return m.el;
  }));
  $$("#conversation-list button").forEach((b) =>
    b.setAttribute("aria-current", String(b.dataset.id) === String(state.conversation) ? "true" : "false"));
  $("#messages").lastElementChild?.scrollIntoView({ block: "end" });
}

function message(role) {
  const body = h("div", { class: "body", "data-testid": role === "assistant" ? "answer" : "question" });
  const el = h("article", { class: `msg ${role}`, "data-role": role },
    h("div", { class: "who", text: role === "assistant" ? "second self" : role === "user" ? "you" : role }), body);
  return { el, body };
}

/** Replace an answer's text with the final one, `[n]` markers becoming buttons that open the memory. */
function finishAnswer(m, text, citations, note) {
  const byN = new Map(citations.map((c) => [String(c.n), c]));
  const parts = [];
  let last = 0;
  for (const match of text.matchAll(/\[(\d+)\]/g)) {
    const c = byN.get(match[1]);
    if (!c) continue;
    parts.push(text.slice(last, match.index), citeButton(c));
    last = match.index + match[0].length;
  }
  parts.push(text.slice(last));
  m.body.replaceChildren(...parts);
  const tail = m.el.querySelector(".sources");
  if (tail) tail.remove();
  if (note) m.el.append(h("p", { class: "note", "data-testid": "answer-note", text: note }));
  if (citations.length) m.el.append(h("ol", { class: "sources", "aria-label": "Cited memories" },
    ...citations.map((c) => h("li", {}, citeButton(c, true)))));
}

function citeButton(c, long = false) {
  const label = long ? `[${c.n}] ${c.title || c.path || c.source}${c.date ? ", " + when(c.date) : ""}`
    + (c.cited_by === "overlap" ? " (by overlap)" : "") : `[${c.n}]`;
  return h("button", { type: "button", class: long ? "link cite-long" : "cite", "data-testid": long ? "citation-source" : "citation",
    "data-n": c.n, "aria-label": long ? null : `memory ${c.n}: ${c.title || c.source}`, onclick: () => showCitation(c) }, label);
}

function showCitation(c) {
  const panel = $("#citation-panel");
  $("#citation-title").textContent = `[${c.n}] ${c.title || c.path || "memory"}`;
  dl($("#citation-meta"), [["source", c.source], ["file", c.path], ["date", when(c.date)],
    ["speakers", Array.isArray(c.speakers) ? c.speakers.join(", ") : c.speakers],
    ["cited", c.cited_by === "overlap" ? "by overlap (the answer has no marker)" : "by the answer's marker"],
    ["chunk", c.chunk_id]]);
  $("#citation-snippet").textContent = c.snippet || "";
  panel.hidden = false;
  panel.focus();
}

async function sendChat(text) {
  const input = $("#chat-input");
  const q = message("user"); q.body.textContent = text;
  const a = message("assistant");
  a.el.setAttribute("aria-busy", "true");
  $("#messages").append(q.el, a.el);
  input.value = "";
  const model = $("#model-select").value || "secondself";
  localStorage.setItem("secondself.model", model);
  state.abort = new AbortController();
  $("#chat-send").disabled = true; $("#chat-stop").hidden = false;
  let streamed = "", extra = null;
  try {
    const res = await request("/v1/chat/completions", { method: "POST", signal: state.abort.signal,
      // with a conversation id the server takes the earlier turns from its own log
      body: { model, stream: true, messages: [{ role: "user", content: text }], conversation_id: state.conversation } });
    for await (const { data } of sse(res)) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(500, chunk);
      const delta = chunk.choices?.[0]?.delta?.content;
      if (delta) { streamed += delta; a.body.textContent = streamed; a.el.scrollIntoView({ block: "end" }); }
      if (chunk.secondself) extra = chunk.secondself;
    }
  } catch (e) {
    if (e.name !== "AbortError") { a.el.append(h("p", { class: "error-text", text: e.message })); }
    else a.el.append(h("p", { class: "note", text: "(stopped)" }));
  } finally {
    a.el.removeAttribute("aria-busy");
    $("#chat-send").disabled = false; $("#chat-stop").hidden = true; state.abort = null;
  }
  const final = extra?.text ?? streamed;
  const note = extra?.abstained ? (extra.reason || "not enough in my memories") : "";
  finishAnswer(a, final, extra?.citations || [], note);
  if (extra?.conversation_id != null) state.conversation = extra.conversation_id;
  refreshConversations().then(() => $$("#conversation-list button").forEach((b) =>
    b.setAttribute("aria-current", String(b.dataset.id) === String(state.conversation) ? "true" : "false")))
    .catch(() => {});
  input.focus();
}

// -- memories ------------------------------------------------------------------------------------------

async function loadMemories() {
  const { data } = await api("/api/sources");
  $("#source-list").replaceChildren(...(data.length ? data.map((s) => h("tr", { "data-source": s.name },
    h("td", {}, h("strong", { text: s.name }), h("div", { class: "muted small", text: s.root || "" })),
    h("td", { text: s.files }), h("td", { text: s.chunks }), h("td", { text: when(s.last_ingest_at) }),
    h("td", {}, h("button", { type: "button", class: "danger", "data-testid": "delete-source",
      "aria-label": `Forget source ${s.name}`, onclick: () => deleteSource(s.name) }, "Forget")))) :
    [h("tr", {}, h("td", { colspan: 5, class: "muted", text: "No memories yet: add files above." }))]));
}

async function deleteSource(name) {
  if (!confirm(`Forget the source "${name}" and everything learned from it? This cannot be undone.`)) return;
  try {
    await api(`/api/sources/${encodeURIComponent(name)}`, { method: "DELETE" });
    announce(`source ${name} forgotten`);
    await loadMemories();
  } catch (e) { showError(e); }
}

async function upload(files) {
  if (!files.length) throw new Error("Choose one or more files first (or drop them on the box).");
  const form = new FormData();
  for (const f of files) form.append("files", f, f.name);
  const source = $("#upload-source").value.trim();
  if (source) form.append("source", source);
  $("#upload-submit").disabled = true;
  try {
    const { job } = await api("/api/memories", { method: "POST", body: form });
    $("#upload-files").value = ""; $("#upload-chosen").textContent = "";
    await followJob(job, $("#ingest-job"), () => loadMemories());
  } finally { $("#upload-submit").disabled = false; }
}

async function search(q, k) {
  const { results } = await api(`/api/search?${new URLSearchParams({ q, k })}`);
  $("#search-results").replaceChildren(...(results.length ? results.map((r) => h("li", { "data-testid": "search-result" },
    h("div", { class: "hit-head" }, h("strong", { text: r.title || r.path }),
      h("span", { class: "muted small", text: [r.source, when(r.date), (r.speakers || []).join(", "),
        typeof r.score === "number" ? `score ${r.score.toFixed(3)}` : ""].filter(Boolean).join(" · ") })),
    h("div", { class: "muted small", text: r.path }), h("p", { class: "snippet", text: r.snippet })))
    : [h("li", { class: "muted", text: "Nothing found." })]));
  announce(`${results.length} results`);
}

// -- profile -------------------------------------------------------------------------------------------

const SECTIONS = [["biography", "Biography", (p) => p.biography],
  ["biography_second", "Biography (second person)", (p) => p.biography_second],
  ["status_recent", "Recently", (p) => p.status?.recent], ["status_earlier", "Earlier", (p) => p.status?.earlier]];

async function loadProfile() {
  const versions = await api("/api/profile/versions");
  renderVersions(versions.data);
  let res;
  try { res = await api("/api/profile"); } catch (e) {
    if (e.code !== "no_profile" && e.status !== 404) throw e;
    $("#profile-empty").hidden = false; $("#profile-body").hidden = true;
    return;
  }
  const p = res.profile;
  $("#profile-empty").hidden = true; $("#profile-body").hidden = false;
  $("#profile-info").textContent = `Version ${res.version}, built ${when(p.built_at)}`
    + (p.status?.as_of ? ` · newest memory ${p.status.as_of}` : "")
    + (p.edited?.length ? ` · edited by you: ${p.edited.join(", ")}` : "");
  $("#profile-sections").replaceChildren(...SECTIONS.map(([key, label, get]) => section(key, label, get(p) || "",
    (p.edited || []).includes(key))));
  $("#shade-list").replaceChildren(...(p.shades || []).map((s) => h("details", { class: "shade", "data-testid": "shade" },
    h("summary", {}, h("strong", { text: s.name }), s.role ? ` — ${s.role}` : ""),
    h("p", { text: s.description }),
    h("ol", { class: "timeline" }, ...(s.timeline || []).map((e) => h("li", {},
      h("time", { text: e.date }), " ", e.text))))));
  renderFacts(p.facts || []);
  $("#topic-list").replaceChildren(...(p.topics || []).map((t) => h("li", { title: t.summary || "" },
    `${t.name} (${(t.chunks || []).length})`)));
}

function section(key, label, text, edited) {
  const body = h("p", { class: "prose", text: text || "(empty)" });
  const wrap = h("div", { class: "section", "data-section": key }, h("div", { class: "row spread" },
    h("h3", {}, label, edited ? h("span", { class: "badge", text: "edited" }) : ""),
    h("button", { type: "button", "data-testid": `edit-${key}`, onclick: () => edit() }, "Edit")), body);
  function edit() {
    const area = h("textarea", { rows: 6, "aria-label": label });
    area.value = text;
    const form = h("form", { class: "col" }, area, h("div", { class: "row" },
      h("button", { type: "submit" }, "Save"), h("button", { type: "button", onclick: () => form.replaceWith(body) }, "Cancel")));
    form.addEventListener("submit", async (ev) => {
      ev.preventDefault();
      try {
        await api(`/api/profile/sections/${key}`, { method: "PUT", body: { text: area.value } });
        announce(`${label} saved`);
        await loadProfile();
      } catch (e) { showError(e); }
    });
    body.replaceWith(form);
    area.focus();
  }
  return wrap;
}

function renderFacts(facts) {
  $("#fact-list").replaceChildren(...(facts.length ? facts.map((f) => h("tr", { title: f.evidence || "" },
    h("td", { text: f.subject }), h("td", { text: f.predicate }), h("td", { text: f.object }),
    h("td", { text: f.valid_from || "…" }), h("td", { text: f.valid_to || "now" }),
    h("td", { text: f.origin + (f.pinned ? ", pinned" : "") }))) : [h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No facts." }))]));
}

async function restore(version) {
  try {
    await api("/api/profile/rollback", { method: "POST", body: { version } });
    announce(`version ${version} restored as a new version`);
    await loadProfile();
  } catch (e) { showError(e); }
}

function renderVersions(list) {
  $("#version-list").replaceChildren(...list.slice().reverse().map((v) => h("tr", { class: v.current ? "current" : "" },
    h("td", { text: `${v.version}${v.current ? " (current)" : ""}` }), h("td", { text: when(v.created_at) }),
    h("td", { text: v.kind }), h("td", { text: v.summary || "" }),
    h("td", {}, v.current ? "" : h("button", { type: "button", "data-testid": "restore-version",
      "aria-label": `Make version ${v.version} current again`, onclick: () => restore(v.version) }, "Restore")))));
  const opts = () => list.map((v) => h("option", { value: v.version, text: `version ${v.version}` }));
  $("#diff-a").replaceChildren(...opts()); $("#diff-b").replaceChildren(...opts());
  if (list.length > 1) $("#diff-a").value = list[list.length - 2].version;
  if (list.length) $("#diff-b").value = list[list.length - 1].version;
  $("#diff-form").hidden = list.length < 2;
}

// -- training ------------------------------------------------------------------------------------------

async function loadTraining() {
  const res = await api("/api/adapters");
  state.adapters = res.data;
  const current = res.data.find((a) => a.version === res.current);
  $("#adapter-list").replaceChildren(...res.data.slice().reverse().map((a) => {
    const t = a.metadata?.train || {};
    const isCurrent = a.version === res.current;
    return h("tr", { class: isCurrent ? "current" : "", "data-version": a.version },
      h("td", { text: a.version + (isCurrent ? " (in use)" : "") }), h("td", { text: when(a.created_at || a.metadata?.created_at) }),
      h("td", { text: a.base || a.metadata?.base || "" }), h("td", { text: t.steps ?? "" }), h("td", { text: num(t.final_loss ?? t.loss) }),
      h("td", {}, isCurrent ? "" : h("button", { type: "button", "data-testid": "use-adapter",
        onclick: () => useAdapter(a.version) }, "Use")));
  }));
  renderEval(current);
  scoresChart(res.data);
}

function renderEval(adapter) {
  const ev = adapter?.metadata?.eval || {};
  const scores = ev.scores || {};
  const metrics = [...new Set(Object.values(scores).flatMap((s) => Object.keys(s || {})))].sort();
  $("#eval-empty").hidden = metrics.length > 0;
  $("#eval-empty").textContent = adapter ? `Adapter ${adapter.version} has no evaluation scores.` : "No adapter trained yet.";
  const table = $("#eval-table");
  table.hidden = !metrics.length;
  if (adapter) table.setAttribute("aria-label", `Evaluation of ${adapter.version}`);
  $("tbody", table).replaceChildren(...metrics.map((m) => h("tr", {}, h("th", { scope: "row", text: m }),
    h("td", { text: num(scores.base?.[m]) }), h("td", { text: num(scores.personal?.[m]) }))));
  dl($("#eval-summary"), Object.entries(ev.summary || {}).map(([k, v]) => [k.replace(/_/g, " "), num(v, 4)]));
}

async function useAdapter(version) {
  try {
    await api(`/api/adapters/${encodeURIComponent(version)}/use`, { method: "POST" });
    announce(`now using adapter ${version}`);
    await loadTraining();
  } catch (e) { showError(e); }
}

async function followTraining(job) {
  $("#train-start").disabled = true;
  $("#train-cancel").hidden = false;
  $("#train-cancel").dataset.job = job.id;
  try {
    return await followJob(job, $("#train-job"), () => loadTraining());
  } finally {
    $("#train-start").disabled = false;
    $("#train-cancel").hidden = true;
  }
}

function renderTrainJob(job) {
  const losses = job.progress?.losses || [];
  if (losses.length) { $("#loss-figure").hidden = false; lineChart($("#loss-chart"), [{ name: "loss", points: losses }]); }
}

/** A small line chart into an <svg viewBox="0 0 480 180">: series of [x, y] points, with axes and legend. */
function lineChart(el, series, { xLabels } = {}) {
  const W = 480, H = 180, L = 44, R = 24, B = 28;
  const T = 12 + (series.length > 1 ? Math.ceil(series.length / 3) * 12 : 0);  // room for the legend
  const pts = series.flatMap((s) => s.points);
  el.replaceChildren();
  if (!pts.length) return;
  const xs = pts.map((p) => p[0]), ys = pts.map((p) => p[1]);
  let [x0, x1, y0, y1] = [Math.min(...xs), Math.max(...xs), Math.min(...ys), Math.max(...ys)];
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  if (y0 === y1) { y0 -= Math.abs(y0) * 0.1 || 1; y1 += Math.abs(y1) * 0.1 || 1; }
  const sx = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const sy = (y) => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  el.append(svg("line", { x1: L, y1: H - B, x2: W - R, y2: H - B, class: "axis" }),
    svg("line", { x1: L, y1: T, x2: L, y2: H - B, class: "axis" }));
  for (const y of [y0, (y0 + y1) / 2, y1])
    el.append(svg("text", { x: L - 4, y: sy(y) + 4, "text-anchor": "end", class: "tick" }, num(y, 2)));
  const xt = xLabels ? xLabels.map((_, i) => i) : [x0, x1];
  for (const x of xt)
    el.append(svg("text", { x: sx(x), y: H - B + 16, "text-anchor": "middle", class: "tick" }, xLabels ? xLabels[x] : num(x, 0)));
  series.forEach((s, i) => {
    const d = s.points.map((p, j) => `${j ? "L" : "M"}${sx(p[0]).toFixed(1)},${sy(p[1]).toFixed(1)}`).join(" ");
    el.append(svg("path", { d, class: `series s${i % 6}` }, undefined));
    for (const p of s.points) el.append(svg("circle", { cx: sx(p[0]), cy: sy(p[1]), r: 2.5, class: `dot s${i % 6}` }));
    if (series.length > 1) el.append(svg("text", { x: L + 8 + (i % 3) * 140, y: 12 + Math.floor(i / 3) * 12,
      class: `legend s${i % 6}` }, s.name));
  });
  el.querySelectorAll("path").forEach((p, i) => p.append(svg("title", {}, series[i].name)));
}

function scoresChart(adapters) {
  const withEval = adapters.filter((a) => a.metadata?.eval?.summary);
  const keys = [...new Set(withEval.flatMap((a) => Object.keys(a.metadata.eval.summary)))]
    .filter((k) => k !== "generic_leaks")  // a count, not a score on the others' scale
    .filter((k) => withEval.some((a) => typeof a.metadata.eval.summary[k] === "number")).sort();
  $("#scores-figure").hidden = !withEval.length || !keys.length;
  lineChart($("#scores-chart"), keys.map((k) => ({ name: k.replace(/_/g, " "),
    points: withEval.map((a, i) => [i, a.metadata.eval.summary[k]]).filter((p) => typeof p[1] === "number") })),
  { xLabels: withEval.map((a) => a.version) });
}

// -- settings ------------------------------------------------------------------------------------------

async function loadSettings() {
  const s = await api("/api/settings");
  dl($("#model-list"), Object.entries(s.models || {}).map(([role, m]) =>
    [role, [m.spec, m.where].filter(Boolean).join(" — ")]));
  $("#token-list").replaceChildren(...(s.tokens || []).map((t) => h("tr", { "data-token": t.name },
    h("td", { text: t.name }), h("td", { text: (t.scopes || []).join(" ") }), h("td", { text: `${t.prefix}…` }),
    h("td", { text: when(t.created_at) }), h("td", { text: when(t.last_used_at) || "never" }),
    h("td", {}, h("button", { type: "button", class: "danger", "data-testid": "revoke-token",
      "aria-label": `Revoke token ${t.name}`, onclick: () => revokeToken(t.name) }, "Revoke")))));
  if (!(s.tokens || []).length)
    $("#token-list").append(h("tr", {}, h("td", { colspan: 6, class: "muted",
      text: "No tokens: the API is open to this machine only." })));
}

async function revokeToken(name) {
  if (!confirm(`Revoke the token "${name}"? Anything using it stops working at once.`)) return;
  try {
    await api(`/api/tokens/${encodeURIComponent(name)}`, { method: "DELETE" });
    announce(`token ${name} revoked`);
    await loadSettings();
  } catch (e) { showError(e); }
}

// -- spaces --------------------------------------------------------------------------------------------

async function loadSpaces() {
  const { data } = await api("/api/spaces");
  $("#space-list").replaceChildren(...(data.length ? data.map((sp) => h("li", {},
    h("button", { type: "button", class: "link", "data-id": sp.id, "aria-current": String(sp.id === state.space),
      onclick: () => openSpace(sp.id).catch(showError) }, sp.topic,
    h("span", { class: "muted small block", text: `${sp.status} · ${sp.participants.length} participant(s) · ${when(sp.updated_at)}` }))))
    : [h("li", { class: "muted", text: "No spaces yet." })]));
  if (state.space !== null && data.some((sp) => sp.id === state.space)) await openSpace(state.space);
  else { state.space = null; $("#space-detail").hidden = true; }
}

const turnKind = (sp, t) => (t.round === 0 ? "opening" : t.round > sp.rounds ? "summary" : `round ${t.round}`);

async function openSpace(id) {
  const sp = await api(`/api/spaces/${encodeURIComponent(id)}`);
  state.space = sp.id;
  $$("#space-list button").forEach((b) => b.setAttribute("aria-current", String(Number(b.dataset.id) === sp.id)));
  $("#space-detail").hidden = false;
  $("#space-title").textContent = sp.topic;
  dl($("#space-info"), [["status", sp.progress], ["host", sp.host.ref], ["participants", sp.participants.map((p) => p.ref).join(", ")],
    ["rounds", sp.rounds], ["never share", sp.never_share.join(", ")],
    ["citations", sp.share_citations ? "shared with remote participants" : "not shared"]]);
  const finished = sp.status === "done" || sp.status === "failed";
  $("#space-run").textContent = finished ? "Run again" : sp.turn_count ? "Continue" : "Run";
  $("#space-notices").replaceChildren(...(sp.notices || []).map((n) => h("p", { text: n })));
  $("#space-notices").hidden = !(sp.notices || []).length;
  $("#space-failed").textContent = sp.status === "failed" ? sp.summary || "failed" : "";
  $("#space-failed").hidden = sp.status !== "failed";
  $("#space-turns").replaceChildren(...sp.turns.map((t) => h("li", { class: "turn", "data-testid": "space-turn",
    "data-status": t.status, "data-kind": turnKind(sp, t), "data-speaker": t.speaker },
  h("div", { class: "who", text: `${t.label} · ${turnKind(sp, t)}` }),
  t.status === "skipped" ? h("p", { class: "body error-text", text: `skipped: ${t.error || "failed"}` })
    : h("p", { class: "body", text: t.content }),
  (t.meta?.citations || []).length ? h("ol", { class: "sources", "aria-label": "Cited memories" },
    ...t.meta.citations.map((c) => h("li", { title: c.snippet || "",
      text: `[${c.n}] ${c.title || c.path || c.source} · ${c.source}${c.date ? " · " + when(c.date) : ""}` }))) : null)));
}

async function runSpace() {
  const id = state.space;
  if (id === null) return;
  const restart = $("#space-run").textContent === "Run again";
  if (restart && !confirm("Run this space again? Its transcript is replaced.")) return;
  const { job } = await api(`/api/spaces/${encodeURIComponent(id)}/run`, { method: "POST", body: { restart } });
  await followSpace(job);
}

/** Follow a space's job: its progress in the job box, each new turn in the transcript as it is stored. */
async function followSpace(job) {
  const id = job.params?.space_id, box = $("#space-job");
  $("#space-run").disabled = true;
  let shown = -1;
  try {
    const final = await followJob(job, box, null, (j) => {
      const done = j.progress?.done ?? 0;
      if (done !== shown && state.space === id && state.view === "spaces") { shown = done; openSpace(id).catch(() => {}); }
    });
    if (state.view === "spaces") await loadSpaces();
    return final;
  } finally { $("#space-run").disabled = false; }
}

async function deleteSpace() {
  const id = state.space;
  if (id === null || !confirm("Delete this space, its transcript and its stored tokens?")) return;
  await api(`/api/spaces/${encodeURIComponent(id)}`, { method: "DELETE" });
  state.space = null;
  announce("space deleted");
  await loadSpaces();
}

// -- wiring --------------------------------------------------------------------------------------------

function on(sel, event, fn) {
  $(sel).addEventListener(event, async (ev) => {
    if (event === "submit") ev.preventDefault();
    showError(null);
    try { await fn(ev); } catch (e) { if (e.status !== 401) showError(e); }
  });
}

function wire() {
  for (const b of $$("nav [data-view]")) b.addEventListener("click", () => show(b.dataset.view));
  document.addEventListener("keydown", (e) => {
    if (e.altKey && !e.ctrlKey && !e.metaKey && /^Digit[1-6]$/.test(e.code)) {
      e.preventDefault(); show(VIEWS[Number(e.code.slice(5)) - 1], { focus: true });
    }
    if (e.key === "Escape" && !$("#citation-panel").hidden) { $("#citation-panel").hidden = true; }
  });
  on("#token-form", "submit", async () => {
    setToken($("#token-input").value.trim());
    $("#token-input").value = "";
    $("#token-form").hidden = true;
    await resumeJobs().catch(() => {});
    show(state.view);
  });
  // chat
  $("#chat-input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) { e.preventDefault(); $("#chat-form").requestSubmit(); }
  });
  on("#chat-form", "submit", () => {
    const text = $("#chat-input").value.trim();
    if (text && !state.abort) return sendChat(text);
  });
  $("#chat-stop").addEventListener("click", () => state.abort?.abort());
  $("#new-conversation").addEventListener("click", newConversation);
  $("#citation-close").addEventListener("click", () => { $("#citation-panel").hidden = true; });
  // memories
  on("#upload-form", "submit", () => upload([...$("#upload-files").files]));
  $("#upload-files").addEventListener("change", () => {
    $("#upload-chosen").textContent = [...$("#upload-files").files].map((f) => f.name).join(", ");
  });
  const zone = $("#dropzone");
  for (const ev of ["dragenter", "dragover"]) zone.addEventListener(ev, (e) => { e.preventDefault(); zone.classList.add("over"); });
  for (const ev of ["dragleave", "drop"]) zone.addEventListener(ev, () => zone.classList.remove("over"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    showError(null);
    upload([...e.dataTransfer.files]).catch((err) => { if (err.status !== 401) showError(err); });
  });
  on("#note-form", "submit", async () => {
    const { job } = await api("/api/memories/text", { method: "POST",
      body: { text: $("#note-text").value, title: $("#note-title").value.trim() || null } });
    $("#note-text").value = ""; $("#note-title").value = "";
    await followJob(job, $("#ingest-job"), () => loadMemories());
  });
  on("#search-form", "submit", () => search($("#search-q").value.trim(), $("#search-k").value || 8));
  // profile
  on("#build-form", "submit", async () => {
    const { job } = await api("/api/build", { method: "POST", body: { full: $("#build-full").checked } });
    await followJob(job, $("#build-job"), () => loadProfile());
  });
  on("#facts-form", "submit", async () => {
    const q = new URLSearchParams();
    if ($("#facts-about").value.trim()) q.set("about", $("#facts-about").value.trim());
    if ($("#facts-at").value) q.set("at", $("#facts-at").value);
    renderFacts((await api(`/api/facts?${q}`)).data);
  });
  on("#diff-form", "submit", async () => {
    const q = new URLSearchParams({ a: $("#diff-a").value, b: $("#diff-b").value });
    const { lines } = await api(`/api/profile/diff?${q}`);
    $("#diff-out").textContent = lines.length ? lines.join("\n") : "No differences.";
    $("#diff-out").hidden = false;
  });
  // training
  on("#train-form", "submit", async () => {
    const body = {};
    for (const [id, key] of [["#train-steps", "steps"], ["#train-epochs", "epochs"], ["#train-rank", "rank"]])
      if ($(id).value) body[key] = Number($(id).value);
    if ($("#train-base").value.trim()) body.base = $("#train-base").value.trim();
    $("#loss-chart").replaceChildren(); $("#loss-figure").hidden = true;
    const { job } = await api("/api/train", { method: "POST", body });
    await followTraining(job);
  });
  on("#train-cancel", "click", async () => {
    const id = $("#train-cancel").dataset.job;
    if (id) await api(`/api/jobs/${encodeURIComponent(id)}/cancel`, { method: "POST" });
  });
  // settings
  on("#token-create-form", "submit", async () => {
    const scopes = $$("#token-create-form input[name=scope]:checked").map((i) => i.value);
    const res = await api("/api/tokens", { method: "POST", body: { name: $("#new-token-name").value.trim(), scopes } });
    $("#new-secret-value").textContent = res.token;
    $("#new-secret").hidden = false;
    $("#new-token-name").value = "";
    await loadSettings();
  });
  // spaces
  on("#space-form", "submit", async () => {
    const participants = $("#space-participants").value.split("\n").map((l) => l.trim()).filter(Boolean);
    const never_share = $("#space-never").value.split(",").map((t) => t.trim()).filter(Boolean);
    const sp = await api("/api/spaces", { method: "POST", body: { topic: $("#space-topic").value.trim(), participants,
      rounds: Number($("#space-rounds").value) || 2, never_share, share_citations: $("#space-cite").checked } });
    $("#space-topic").value = ""; $("#space-participants").value = ""; $("#space-never").value = "";
    state.space = sp.id;
    announce(`space ${sp.id} created`);
    await loadSpaces();
  });
  on("#space-run", "click", runSpace);
  on("#space-delete", "click", deleteSpace);
  $("#new-secret-copy").addEventListener("click", () =>
    navigator.clipboard?.writeText($("#new-secret-value").textContent).then(() => announce("token copied")));
}

async function start() {
  wire();
  const view = readFragment() || state.view;
  try {
    const health = await (await fetch("/health")).json();
    state.auth = health.auth;
    const who = health.person_name || health.person;
    if (who) { $("#person-name").textContent = who; document.title = `${who} · secondself`; }
    $("#version").textContent = health.version ? `v${health.version}` : "";
    const notices = health.notices || [];
    $("#notices").replaceChildren(...notices.map((n) => h("p", { text: n })));
    $("#notices").hidden = !notices.length;
  } catch (e) { showError(new Error("The secondself server is not answering: is `secondself serve` running?")); }
  if (state.auth === "token" && !state.token) needToken("");
  else resumeJobs().catch(() => {});
  show(view);
}

start();
