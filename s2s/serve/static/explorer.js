// The s2s attention explorer: plain JavaScript over the service's JSON API (no build step,
// nothing fetched from elsewhere). Translation models: a sentence -> n-best translations and
// the attention record of the chosen one (the JSON `s2s inspect -o x.json` writes), drawn as a
// heatmap. Captioning models: an image -> captions, each word's attention over the image.
"use strict";

const $ = (id) => document.getElementById(id);
const KINDS = { cross: "weights", "encoder-self": "encoder_self", "decoder-self": "decoder_self" };
const BLUES = [[247, 251, 255], [222, 235, 247], [198, 219, 239], [158, 202, 225],
  [107, 174, 214], [66, 146, 198], [33, 113, 181], [8, 81, 156], [8, 48, 107]];
const MAX_UPLOAD = 10 << 20;
const FONT = "12px ui-monospace, Menlo, monospace";

const state = {
  models: [], model: null,
  source: "", hypotheses: [], chosen: -1, target: null,
  record: null, caption: null,  // the attention record, or the chosen caption's attention
  picture: null,  // the uploaded image, for captions
  hover: null,  // {row: i} or {col: j}
  layout: null,  // where the heatmap's cells are, for hit-testing
};

// -- talking to the service -------------------------------------------------------------------

async function api(path, body) {
  const headers = {};
  const key = sessionStorage.getItem("s2s-api-key");
  if (key) headers["X-API-Key"] = key;
  const options = { method: body === undefined ? "GET" : "POST", headers };
  if (body instanceof FormData) options.body = body;
  else if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    options.body = JSON.stringify(body);
  }
  const response = await fetch(path, options);
  const answer = await response.json().catch(() => ({ error: `HTTP ${response.status}` }));
  if (response.status === 401) $("key-form").hidden = false;
  if (!response.ok) throw new Error(answer.error || `HTTP ${response.status}`);
  return answer;
}

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function guarded(work) {
  try {
    await work();
  } catch (e) {
    say(e.message, true);
  }
}

// -- matrices ---------------------------------------------------------------------------------

function kindsOf(record) {
  return Object.keys(KINDS).filter((k) => record[KINDS[k]] !== undefined && record[KINDS[k]] !== null);
}

function weightsOf(record, kind) {  // [L][H][R][C]
  return kind === "cross" ? record.weights : record[KINDS[kind]].weights;
}

function labelsOf(record, kind) {  // [row labels, column labels]
  if (kind === "cross") return [record.tgt_tokens, record.src_tokens];
  const part = record[KINDS[kind]];
  if (part.rows && part.columns) return [part.rows, part.columns];
  return kind === "encoder-self" ? [record.src_tokens, record.src_tokens]
    : [record.tgt_tokens, ["<s>", ...record.tgt_tokens.slice(0, -1)]];  // row t reads <s> y_1 .. y_t
}

function mean(matrices) {
  return matrices[0].map((row, i) => row.map((_, j) =>
    matrices.reduce((sum, m) => sum + m[i][j], 0) / matrices.length));
}

// The panels to draw: [{title, layer, head, matrix}] for the chosen layer and head.
function panels(weights, layer, head) {
  const layers = layer === "all" ? weights.map((_, i) => i) : [Number(layer)];
  const out = [];
  for (const l of layers) {
    if (head === "all") weights[l].forEach((m, h) => out.push({ layer: l, head: h, matrix: m }));
    else if (head === "mean") out.push({ layer: l, head: "mean", matrix: mean(weights[l]) });
    else out.push({ layer: l, head: Number(head), matrix: weights[l][Number(head)] });
  }
  return out;
}

function current() {  // what is on screen: {kind, rows, cols, panels, matrix}
  const record = state.caption || state.record;
  if (!record) return null;
  const kind = $("kind").value || "cross";
  const [rows, cols] = state.caption ? [record.tokens, []] : labelsOf(record, kind);
  const shown = panels(state.caption ? record.weights : weightsOf(record, kind),
    $("layer").value, $("head").value);
  return { kind, rows, cols, panels: shown, matrix: mean(shown.map((p) => p.matrix)) };
}

function colour(v) {  // v in [0, 1] -> the Blues ramp
  const x = Math.min(Math.max(v, 0), 1) * (BLUES.length - 1);
  const i = Math.min(Math.floor(x), BLUES.length - 2);
  const t = x - i;
  const c = BLUES[i].map((a, k) => Math.round(a + (BLUES[i + 1][k] - a) * t));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

// -- controls ---------------------------------------------------------------------------------

function fill(select, options, keep) {
  const before = select.value;
  select.replaceChildren(...options.map(([value, text]) => new Option(text, value)));
  const values = options.map(([value]) => String(value));
  select.value = keep && values.includes(before) ? before : String(options[0][0]);
}

function setChoices(record, defaults) {
  const kinds = state.caption ? ["cross"] : kindsOf(record);
  fill($("kind"), kinds.map((k) => [k, k]), true);
  const weights = state.caption ? record.weights : weightsOf(record, $("kind").value);
  const layers = weights.length, heads = weights[0].length;
  const layerOptions = [...Array(layers).keys()].map((i) => [i, String(i)]);
  fill($("layer"), layers > 1 ? [...layerOptions, ["all", "all (grid)"]] : layerOptions, true);
  const headOptions = [...Array(heads).keys()].map((i) => [i, String(i)]);
  fill($("head"), heads > 1 ? [...headOptions, ["mean", "mean"], ["all", "all (grid)"]] : headOptions, true);
  if (defaults) {
    $("layer").value = String(defaults.default_layer);
    $("head").value = String(defaults.default_head);
  }
}

// -- drawing ----------------------------------------------------------------------------------

function prepare(canvas, width, height) {
  const ratio = window.devicePixelRatio || 1;
  canvas.width = Math.ceil(width * ratio);
  canvas.height = Math.ceil(height * ratio);
  canvas.style.width = `${width}px`;
  const ctx = canvas.getContext("2d");
  ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
  ctx.fillStyle = "#fff";
  ctx.fillRect(0, 0, width, height);
  return ctx;
}

function drawHeatmap() {
  const view = current();
  const canvas = $("heatmap");
  if (!view || state.caption) return;
  const { rows, cols } = view;
  const single = view.panels.length === 1;
  const measure = prepare(canvas, 10, 10);
  measure.font = FONT;
  const widest = (labels) => Math.max(0, ...labels.map((t) => measure.measureText(t).width));
  const title = `${state.model.name}: ${view.kind}, layer ${$("layer").value}, head ${$("head").value}`;
  const columns = $("head").value === "all" ? view.panels.filter((p) => p.layer === view.panels[0].layer).length : 1;
  const gridRows = Math.ceil(view.panels.length / columns);
  const cell = single ? Math.max(10, Math.min(30, Math.floor(560 / Math.max(rows.length, cols.length))))
    : Math.max(3, Math.min(14, Math.floor(220 / Math.max(rows.length, cols.length))));
  const labelled = cell >= 12;
  const left = labelled ? widest(rows) + 12 : 8;
  const top = 28 + (labelled ? widest(cols) + 8 : 0);
  const panelW = cols.length * cell, panelH = rows.length * cell, gap = single ? 0 : 24;
  const width = Math.max(left + columns * (panelW + gap) + 80, measure.measureText(title).width + 20);
  const height = top + gridRows * (panelH + gap) + 10;
  const ctx = prepare(canvas, width, height);
  ctx.font = FONT;
  ctx.fillStyle = "#1b1f24";
  ctx.textBaseline = "middle";
  ctx.fillText(title, 4, 12);
  const peak = Math.max(1e-9, ...view.panels.flatMap((p) => p.matrix.flat()));
  state.layout = { left, top, cell, panelW, panelH, gap, columns, panels: view.panels };
  view.panels.forEach((panel, k) => {
    const x0 = left + (k % columns) * (panelW + gap), y0 = top + Math.floor(k / columns) * (panelH + gap);
    drawPanel(ctx, panel, x0, y0, cell, peak, single ? null : `L${panel.layer} H${panel.head}`);
    if (k < columns) drawColumnLabels(ctx, cols, x0, top, cell);
    if (k % columns === 0) drawRowLabels(ctx, rows, left, y0, cell);
  });
  drawColourBar(ctx, left + columns * (panelW + gap) + 16, top, Math.min(200, gridRows * panelH), peak);
  canvas.dataset.rows = rows.length;
  canvas.dataset.cols = cols.length;
  canvas.dataset.panels = view.panels.length;
}

function drawPanel(ctx, panel, x0, y0, cell, peak, caption) {
  panel.matrix.forEach((row, i) => row.forEach((v, j) => {
    ctx.fillStyle = colour(v / peak);
    ctx.fillRect(x0 + j * cell, y0 + i * cell, cell, cell);
  }));
  const hover = state.hover;
  ctx.lineWidth = 2;
  if (hover && hover.row !== undefined) {
    ctx.strokeStyle = "#d9480f";
    ctx.strokeRect(x0 + 1, y0 + hover.row * cell + 1, panel.matrix[0].length * cell - 2, cell - 2);
    const best = argmax(panel.matrix[hover.row]);
    ctx.strokeStyle = "#ffd43b";
    ctx.strokeRect(x0 + best * cell + 2, y0 + hover.row * cell + 2, cell - 4, cell - 4);
  } else if (hover && hover.col !== undefined) {
    ctx.strokeStyle = "#d9480f";
    ctx.strokeRect(x0 + hover.col * cell + 1, y0 + 1, cell - 2, panel.matrix.length * cell - 2);
  }
  if (caption) {
    ctx.fillStyle = "#57606a";
    ctx.fillText(caption, x0, y0 + panel.matrix.length * cell + 10);
  }
}

function drawRowLabels(ctx, labels, left, y0, cell) {
  ctx.fillStyle = "#1b1f24";
  ctx.textAlign = "right";
  labels.forEach((t, i) => {
    ctx.font = state.hover && state.hover.row === i ? `bold ${FONT}` : FONT;
    if (cell >= 12) ctx.fillText(t, left - 6, y0 + i * cell + cell / 2);
  });
  ctx.textAlign = "left";
  ctx.font = FONT;
}

function drawColumnLabels(ctx, labels, x0, top, cell) {
  ctx.fillStyle = "#1b1f24";
  labels.forEach((t, j) => {
    if (cell < 12) return;
    ctx.save();
    ctx.translate(x0 + j * cell + cell / 2, top - 6);
    ctx.rotate(-Math.PI / 2);
    ctx.font = state.hover && state.hover.col === j ? `bold ${FONT}` : FONT;
    ctx.fillText(t, 0, 0);
    ctx.restore();
  });
}

function drawColourBar(ctx, x, y, height, peak) {
  for (let k = 0; k < height; k++) {
    ctx.fillStyle = colour(1 - k / height);
    ctx.fillRect(x, y + k, 12, 1);
  }
  ctx.fillStyle = "#1b1f24";
  ctx.fillText(peak.toFixed(2), x + 16, y + 4);
  ctx.fillText("0", x + 16, y + height - 4);
}

function argmax(values) {
  return values.reduce((best, v, i) => (v > values[best] ? i : best), 0);
}

// -- tokens and hovering ------------------------------------------------------------------------

function chips(container, labels, axis) {
  container.replaceChildren(...labels.map((text, i) => {
    const chip = document.createElement("span");
    chip.className = "tok";
    chip.textContent = text;
    chip.dataset.index = i;
    chip.addEventListener("mouseenter", () => setHover(axis === "row" ? { row: i } : { col: i }));
    chip.addEventListener("mouseleave", () => setHover(null));
    return chip;
  }));
}

function showTokens() {
  const view = current();
  const captioning = Boolean(state.caption);
  $("row-axis").textContent = captioning ? "caption" : view.kind === "encoder-self" ? "source" : "output";
  $("col-axis").textContent = view.kind === "decoder-self" ? "output" : "source";
  $("col-axis").parentElement.hidden = captioning;
  chips($("row-tokens"), view.rows, "row");
  chips($("col-tokens"), view.cols, "col");
}

// Shade the other axis' tokens by the hovered token's weights; the strongest gets "peak".
function setHover(hover) {
  state.hover = hover;
  const view = current();
  if (!view) return;
  const shade = (container, weights, hovered) => {
    const top = weights ? Math.max(1e-9, ...weights) : 1;
    const best = weights ? argmax(weights) : -1;
    for (const chip of container.children) {
      const i = Number(chip.dataset.index);
      const w = weights ? weights[i] : null;
      chip.classList.toggle("hovered", i === hovered);
      chip.classList.toggle("peak", weights !== null && i === best);
      chip.style.background = w === null ? "" : `rgba(33, 113, 181, ${(w / top).toFixed(3)})`;
      chip.style.color = w !== null && w / top > 0.55 ? "#fff" : "";
      if (w === null) delete chip.dataset.weight;
      else chip.dataset.weight = w;
    }
  };
  const m = view.matrix;
  const rowWeights = hover && hover.col !== undefined ? m.map((row) => row[hover.col]) : null;
  const colWeights = hover && hover.row !== undefined ? m[hover.row] : null;
  shade($("row-tokens"), rowWeights, hover ? hover.row : undefined);
  shade($("col-tokens"), colWeights, hover ? hover.col : undefined);
  if (state.caption) drawOverlay();
  else drawHeatmap();
}

function hitTest(event) {
  const canvas = $("heatmap"), layout = state.layout;
  if (!layout) return null;
  const box = canvas.getBoundingClientRect();
  const scale = parseFloat(canvas.style.width) / box.width;
  const x = (event.clientX - box.left) * scale, y = (event.clientY - box.top) * scale;
  const { left, top, cell, panelW, panelH, gap, columns, panels } = layout;
  const rows = panelH / cell, cols = panelW / cell;
  for (let k = 0; k < panels.length; k++) {
    const x0 = left + (k % columns) * (panelW + gap), y0 = top + Math.floor(k / columns) * (panelH + gap);
    const i = Math.floor((y - y0) / cell), j = Math.floor((x - x0) / cell);
    if (i >= 0 && i < rows && j >= 0 && j < cols) return { panel: k, row: i, col: j };
    if (k % columns === 0 && x < x0 && i >= 0 && i < rows) return { panel: k, row: i };
    if (k < columns && y < y0 && j >= 0 && j < cols) return { panel: k, col: j };
  }
  return null;
}

// -- captions ---------------------------------------------------------------------------------

function drawOverlay() {
  const canvas = $("overlay"), picture = state.picture, view = current();
  if (!picture || !view) return;
  const size = 384, side = Math.min(picture.width, picture.height);
  const ctx = prepare(canvas, size, size + 24);
  // the model sees the centre square of the image: so does the overlay
  ctx.drawImage(picture, (picture.width - side) / 2, (picture.height - side) / 2, side, side, 0, 24, size, size);
  const row = state.hover && state.hover.row !== undefined ? state.hover.row : 0;
  const weights = view.matrix[row], [h, w] = state.caption.grid;
  const peak = Math.max(1e-9, ...weights);
  const small = document.createElement("canvas");
  small.width = w;
  small.height = h;
  const cells = small.getContext("2d");
  weights.forEach((v, r) => {  // regions the word did not attend are dimmed
    cells.fillStyle = `rgba(0, 0, 0, ${(0.75 * (1 - v / peak)).toFixed(3)})`;
    cells.fillRect(r % w, Math.floor(r / w), 1, 1);
  });
  ctx.imageSmoothingEnabled = true;
  ctx.drawImage(small, 0, 24, size, size);
  ctx.fillStyle = "#1b1f24";
  ctx.font = FONT;
  ctx.textBaseline = "middle";
  ctx.fillText(`${state.model.name}: "${view.rows[row]}" (layer ${$("layer").value}, head ${$("head").value})`, 4, 12);
}

// -- the flow ---------------------------------------------------------------------------------

function showHypotheses(hypotheses, onChoose) {
  $("hypotheses").replaceChildren(...hypotheses.map((h, k) => {
    const item = document.createElement("li");
    const text = document.createElement("span");
    text.className = "text";
    text.textContent = h.text || "(empty)";
    const score = document.createElement("span");
    score.className = "score";
    score.textContent = h.score.toFixed(3);
    item.append(text, score);
    item.classList.toggle("chosen", k === state.chosen);
    item.addEventListener("click", () => guarded(() => onChoose(k)));
    return item;
  }));
}

async function showAttention(target) {
  say("reading the attention…");
  state.target = target;
  state.record = await api("/v1/attention", {
    model: state.model.name, text: state.source, target, words: $("words").checked });
  state.caption = null;
  const first = !$("kind").options.length;
  setChoices(state.record, first ? state.model : null);
  render();
  say(`${state.record.extra.model}; forced on "${target}"`);
}

function render() {
  $("results").hidden = false;
  $("heatmap").hidden = Boolean(state.caption);
  $("overlay").hidden = !state.caption;
  $("words-label").hidden = Boolean(state.caption);
  $("hint").textContent = state.caption ? "Hover a word of the caption to see where the model looked."
    : "Hover an output word to see the source words it attended; hover a source word to see the output words that attended it.";
  showTokens();
  setHover(null);
}

async function translate() {
  state.source = $("source").value.trim();
  if (!state.source) return say("type a sentence first", true);
  say("translating…");
  const beam = $("beam").value ? Number($("beam").value) : null;
  const nBest = Number($("n-best").value || 1);
  const answer = await api("/v1/translate", {
    model: state.model.name, text: [state.source], beam: Math.max(beam || 0, nBest) || null, n_best: nBest });
  state.hypotheses = answer.translations[0].hypotheses;
  await chooseHypothesis(0);
}

async function chooseHypothesis(k) {  // a forced pass over the k-th hypothesis
  state.chosen = k;
  showHypotheses(state.hypotheses, chooseHypothesis);
  await showAttention(state.hypotheses[k].text);
}

async function force() {
  const source = $("source").value.trim();
  if (!source) return say("type a sentence first", true);
  if (source !== state.source) state.hypotheses = [];  // they belong to another sentence
  state.source = source;
  state.chosen = -1;
  showHypotheses(state.hypotheses, chooseHypothesis);
  await showAttention($("target").value);
}

async function caption() {
  const file = $("image").files[0];
  if (!file) return say("choose an image first", true);
  if (file.size > MAX_UPLOAD) return say(`image: ${file.size} bytes, more than the ${MAX_UPLOAD} allowed`, true);
  say("captioning…");
  const form = new FormData();
  form.append("image", file);
  form.append("model", state.model.name);
  if ($("image-beam").value) form.append("beam", $("image-beam").value);
  form.append("n_best", $("image-n-best").value || "1");
  const answer = await api("/v1/caption", form);
  state.picture = await createImageBitmap(file);
  state.hypotheses = answer.hypotheses;
  chooseCaption(0);
  say("hover a word of the caption to see where the model looked");
}

function chooseCaption(k) {
  state.chosen = k;
  state.caption = state.hypotheses[k].attention;
  showHypotheses(state.hypotheses, chooseCaption);
  setChoices(state.caption, k === 0 ? state.model : null);
  render();
}

function chooseModel() {
  state.model = state.models.find((m) => m.name === $("model").value);
  const captioning = state.model.task === "captioning";
  $("source-form").hidden = captioning;
  $("force-form").hidden = captioning;
  $("image-form").hidden = !captioning;
  $("results").hidden = true;
  $("kind").replaceChildren();
  state.record = state.caption = null;
  state.hypotheses = [];
  $("beam").placeholder = $("image-beam").placeholder = state.model.decode.beam;
  $("model-info").textContent = `${state.model.architecture}; ${state.model.task}; checkpoint ${state.model.checkpoint}`;
  say(captioning ? "choose an image" : "type a sentence");
}

function download(blob, name) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

async function start() {
  const answer = await api("/v1/models");
  state.models = answer.models;
  fill($("model"), state.models.map((m) => [m.name, `${m.name} (${m.task})`]), false);
  chooseModel();
}

$("model").addEventListener("change", chooseModel);
$("source-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(translate); });
$("source").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && !e.shiftKey) { e.preventDefault(); guarded(translate); }
});
$("force-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(force); });
$("image-form").addEventListener("submit", (e) => { e.preventDefault(); guarded(caption); });
$("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  sessionStorage.setItem("s2s-api-key", $("api-key").value);
  $("key-form").hidden = true;
  guarded(start);
});
for (const id of ["layer", "head"]) $(id).addEventListener("change", render);
$("kind").addEventListener("change", () => { setChoices(state.record, null); render(); });
$("words").addEventListener("change", () => {
  if (state.record) guarded(() => showAttention(state.target));
});
$("heatmap").addEventListener("mousemove", (e) => {
  const hit = hitTest(e);
  const hover = hit ? (hit.row !== undefined ? { row: hit.row } : { col: hit.col }) : null;
  if (JSON.stringify(hover) !== JSON.stringify(state.hover)) setHover(hover);
});
$("heatmap").addEventListener("mouseleave", () => setHover(null));
$("heatmap").addEventListener("click", (e) => {  // in a grid, a click opens that panel
  const hit = hitTest(e);
  if (!hit || state.layout.panels.length === 1) return;
  const panel = state.layout.panels[hit.panel];
  $("layer").value = String(panel.layer);
  $("head").value = String(panel.head);
  render();
});
$("download-png").addEventListener("click", () => {
  const canvas = state.caption ? $("overlay") : $("heatmap");
  canvas.toBlob((blob) => download(blob, `${state.model.name}-attention.png`), "image/png");
});
$("download-json").addEventListener("click", () => {
  const record = state.caption ? { model: state.model.name, ...state.hypotheses[state.chosen] } : state.record;
  download(new Blob([JSON.stringify(record)], { type: "application/json" }), `${state.model.name}-attention.json`);
});

window.s2sExplorer = { state, current };  // for tests and the browser console
guarded(start);
