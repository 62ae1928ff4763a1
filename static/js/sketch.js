// The home page's search: a sketch canvas (pointer events: mouse, touch, pen), sketch and photo
// uploads, words and filters, all sent to POST /api/search; results update in place. (The sketch road is the
// server's default: the GAN road is an API parameter only, far worse with today's models.)
// Without JavaScript the same form posts to the page itself and still works (photo or sketch file).
(function () {
  "use strict";
  const form = document.getElementById("search-form");
  if (!form || !window.fetch) return;
  const $ = (id) => document.getElementById(id);
  const canvas = $("sketch-canvas");
  const ctx = canvas.getContext("2d");
  const hint = $("canvas-hint");
  const sizeInput = $("brush-size");
  const penButton = $("tool-pen");
  const eraserButton = $("tool-eraser");
  const liveSearch = $("live-search");
  const sketchInput = $("sketch-input");
  const photoInput = $("photo-input");
  const photoPreview = $("photo-preview");
  const textInput = $("text-input");
  const imaginedImg = $("imagined-img");
  const imaginedEmpty = $("imagined-empty");
  const resultsCol = $("results");
  const resultsBody = $("results-body");
  const statusLine = $("search-status");
  const errorLine = $("search-error");
  const sourceLine = $("query-source");
  const DEBOUNCE_MS = 400;

  // ---- drawing: every change is an action, so undo is "replay all but the last" ----
  const actions = []; // {kind: "stroke", erase, size, points: [[x, y], ...]} | {kind: "image", image} | {kind: "clear"}
  let stroke = null;
  let erasing = false;
  let source = null; // what the next search sends: "sketch" | "photo" | null (words only)
  let photoUrl = null;

  function visibleActions() {
    let start = 0;
    actions.forEach((a, i) => { if (a.kind === "clear") start = i + 1; });
    return actions.slice(start);
  }

  function hasInk() { return visibleActions().length > 0; }

  function paintStroke(a, from) {
    const pts = a.points;
    ctx.save();
    ctx.globalCompositeOperation = a.erase ? "destination-out" : "source-over";
    ctx.strokeStyle = "#111";
    ctx.fillStyle = "#111";
    ctx.lineWidth = a.size;
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    if (pts.length === 1) {
      ctx.beginPath();
      ctx.arc(pts[0][0], pts[0][1], a.size / 2, 0, Math.PI * 2);
      ctx.fill();
    } else {
      ctx.beginPath();
      const first = Math.max(0, from - 1);
      ctx.moveTo(pts[first][0], pts[first][1]);
      for (let i = first + 1; i < pts.length; i++) ctx.lineTo(pts[i][0], pts[i][1]);
      ctx.stroke();
    }
    ctx.restore();
  }

  function paintImage(image) {
    // Fit the uploaded sketch into the square canvas, keeping its proportions.
    const scale = Math.min(canvas.width / image.naturalWidth, canvas.height / image.naturalHeight);
    const w = image.naturalWidth * scale, h = image.naturalHeight * scale;
    ctx.drawImage(image, (canvas.width - w) / 2, (canvas.height - h) / 2, w, h);
  }

  function redraw() {
    ctx.clearRect(0, 0, canvas.width, canvas.height);
    for (const a of visibleActions()) {
      if (a.kind === "stroke") paintStroke(a, 0);
      else if (a.kind === "image") paintImage(a.image);
    }
    hint.hidden = hasInk();
  }

  function point(e) {
    const r = canvas.getBoundingClientRect();
    return [(e.clientX - r.left) * canvas.width / r.width, (e.clientY - r.top) * canvas.height / r.height];
  }

  function brushSize(e) {
    const size = Number(sizeInput.value) * (erasing ? 2.5 : 1);
    // A pen's pressure thickens the line a little; mice and fingers report 0.5.
    return e.pointerType === "pen" && e.pressure > 0 ? size * (0.5 + e.pressure) : size;
  }

  canvas.addEventListener("pointerdown", (e) => {
    if (e.button !== 0 && e.pointerType === "mouse") return;
    e.preventDefault();
    canvas.setPointerCapture(e.pointerId);
    clearTimeout(pending);
    stroke = { kind: "stroke", erase: erasing, size: brushSize(e), points: [point(e)], pointerId: e.pointerId };
    paintStroke(stroke, 0);
    hint.hidden = true;
  });
  canvas.addEventListener("pointermove", (e) => {
    if (!stroke || e.pointerId !== stroke.pointerId) return;
    const events = e.getCoalescedEvents ? e.getCoalescedEvents() : [e];
    const from = stroke.points.length;
    for (const ev of (events.length ? events : [e])) stroke.points.push(point(ev));
    paintStroke(stroke, from);
  });
  function endStroke(e) {
    if (!stroke || e.pointerId !== stroke.pointerId) return;
    delete stroke.pointerId;
    actions.push(stroke);
    stroke = null;
    useSketch();
    if (liveSearch.checked) schedule();
  }
  canvas.addEventListener("pointerup", endStroke);
  canvas.addEventListener("pointercancel", endStroke);

  function setTool(eraser) {
    erasing = eraser;
    penButton.setAttribute("aria-pressed", String(!eraser));
    eraserButton.setAttribute("aria-pressed", String(eraser));
    canvas.classList.toggle("erasing", eraser);
  }
  penButton.addEventListener("click", () => setTool(false));
  eraserButton.addEventListener("click", () => setTool(true));

  function afterEdit() {
    redraw();
    if (hasInk()) { useSketch(); if (liveSearch.checked) schedule(); }
    else if (source === "sketch") { source = null; showSource(); showImagined(null, false); }
  }
  function undo() {
    if (!actions.length) return;
    actions.pop();
    afterEdit();
  }
  $("undo").addEventListener("click", undo);
  $("clear").addEventListener("click", () => {
    if (!hasInk()) return;
    actions.push({ kind: "clear" });
    afterEdit();
  });
  document.getElementById("sketch-block").addEventListener("keydown", (e) => {
    if ((e.ctrlKey || e.metaKey) && e.key.toLowerCase() === "z") { e.preventDefault(); undo(); }
    else if (e.target === canvas && e.key.toLowerCase() === "e") setTool(true);
    else if (e.target === canvas && e.key.toLowerCase() === "p") setTool(false);
  });

  // ---- inputs: the last one used decides whether a sketch or a photo is sent ----
  function useSketch() {
    if (source !== "sketch") {
      source = "sketch";
      photoInput.value = "";
      showPhoto(null);
      showSource();
    }
  }

  function showPhoto(file) {
    if (photoUrl) URL.revokeObjectURL(photoUrl);
    photoUrl = file ? URL.createObjectURL(file) : null;
    photoPreview.hidden = !file;
    if (file) photoPreview.src = photoUrl; else photoPreview.removeAttribute("src");
  }

  function showSource() {
    const words = textInput.value.trim();
    const what = { sketch: "your sketch", photo: "your photo" }[source];
    sourceLine.textContent = what ? `Searching with ${what}${words ? " and words" : ""}` : (words ? "Searching with words" : "");
  }

  sketchInput.addEventListener("change", () => {
    const file = sketchInput.files[0];
    if (!file) return;
    const image = new Image();
    const url = URL.createObjectURL(file);
    image.onload = () => {
      actions.push({ kind: "clear" }, { kind: "image", image });
      sketchInput.value = "";
      afterEdit();
      search();
    };
    image.onerror = () => {
      URL.revokeObjectURL(url);
      sketchInput.value = "";
      showError("That sketch file is not a picture this browser can read. Try a PNG or JPEG.");
    };
    image.src = url;
  });

  photoInput.addEventListener("change", () => {
    const file = photoInput.files[0];
    if (!file) return;
    source = "photo";
    showPhoto(file);
    showSource();
    showImagined(null, false);
    search();
  });

  textInput.addEventListener("input", showSource);
  form.addEventListener("change", (e) => {
    const name = e.target.name;
    if (!liveSearch.checked) return;
    if (["category", "gender", "colour"].includes(name) && (source || textInput.value.trim())) {
      search();
    }
  });
  form.addEventListener("submit", (e) => { e.preventDefault(); search(); });

  // ---- searching ----
  let pending = null;
  let controller = null;
  let sequence = 0;

  function schedule() {
    clearTimeout(pending);
    pending = setTimeout(search, DEBOUNCE_MS);
  }

  function csrfToken() {
    const m = document.cookie.match(/(?:^|;\s*)csrftoken=([^;]+)/);
    return m ? decodeURIComponent(m[1]) : (form.querySelector("[name=csrfmiddlewaretoken]") || {}).value || "";
  }

  function sketchBlob() {
    // On white: an uploaded sketch is opaque and does not fill the square, so "ink = opaque"
    // would be wrong for it; dark-on-white reads the same for drawn and uploaded strokes.
    const out = document.createElement("canvas");
    out.width = canvas.width;
    out.height = canvas.height;
    const c = out.getContext("2d");
    c.fillStyle = "#fff";
    c.fillRect(0, 0, out.width, out.height);
    c.drawImage(canvas, 0, 0);
    return new Promise((resolve) => out.toBlob(resolve, "image/png"));
  }

  function showError(message) {
    errorLine.textContent = message;
    errorLine.hidden = !message;
  }

  function setLoading(on) {
    resultsCol.classList.toggle("loading", on);
    resultsCol.setAttribute("aria-busy", String(on));
    $("search-button").disabled = false; // searching again is always allowed: it replaces the running one
    if (on) {
      statusLine.textContent = "Searching…";
      if (!resultsBody.querySelector(".grid")) resultsBody.replaceChildren(skeleton());
    }
  }

  function skeleton() {
    const ul = document.createElement("ul");
    ul.className = "grid skeleton";
    ul.setAttribute("aria-hidden", "true");
    for (let i = 0; i < 12; i++) {
      const li = document.createElement("li");
      li.className = "ghost";
      ul.appendChild(li);
    }
    return ul;
  }

  function showImagined(dataUri, sketchSearched) {
    imaginedImg.hidden = !dataUri;
    if (dataUri) imaginedImg.src = dataUri; else imaginedImg.removeAttribute("src");
    imaginedEmpty.hidden = !!dataUri;
    imaginedEmpty.textContent = sketchSearched
      ? "No picture: the sketch-to-image model is not trained yet."
      : "Draw to see the picture the model imagines.";
  }

  // The words of a text query that a title shares, marked in the results (folded as the server's title
  // match folds them: case, accents, plurals; search/lexical.py).
  const WORD = /[\p{L}\p{N}_]+/gu;
  function fold(word) {
    const w = word.toLowerCase().normalize("NFKD").replace(/[\u0300-\u036f]/g, "");
    if (w.length > 4 && /(ches|shes|xes|sses)$/.test(w)) return w.slice(0, -2);
    if (w.length > 3 && w.endsWith("s") && !/(ss|us|is)$/.test(w)) return w.slice(0, -1);
    return w;
  }

  function titleWithMatches(text, words) {
    const span = document.createElement("span");
    span.className = "title";
    const wanted = new Set((words.match(WORD) || []).map(fold));
    if (!wanted.size) {
      span.textContent = text;
      return span;
    }
    let last = 0;
    for (const m of text.matchAll(WORD)) {
      if (!wanted.has(fold(m[0]))) continue;
      span.append(text.slice(last, m.index));
      const mark = document.createElement("mark");
      mark.textContent = m[0];
      span.append(mark);
      last = m.index + m[0].length;
    }
    span.append(text.slice(last));
    return span;
  }

  const EAGER_CARDS = 16; // two rows of a wide screen load at once, the rest when scrolled to (as the pages do)

  function card(hit, words, index) {
    const li = document.createElement("li");
    li.className = "card";
    const a = document.createElement("a");
    a.href = hit.url;
    const thumb = document.createElement("span"); // a 3:4 placeholder until the photo arrives
    thumb.className = "thumb";
    const img = document.createElement("img");
    img.alt = hit.title;
    img.width = 120; img.height = 160;
    if (index >= EAGER_CARDS) img.loading = "lazy";
    img.src = hit.image_url;
    thumb.append(img);
    a.append(thumb, titleWithMatches(hit.title, words || ""));
    // No score on the card: it only orders the hits (the API documents it), a shopper reads nothing in it.
    const meta = document.createElement("span");
    meta.className = "meta";
    meta.append(hit.category);
    if (hit.heatmap_url) {
      const heatmapLink = document.createElement("a");
      heatmapLink.className = "heatmap-link";
      heatmapLink.href = hit.heatmap_url;
      heatmapLink.title = `where the model looked for ${hit.category}`;
      heatmapLink.textContent = "heatmap";
      meta.append(" ", heatmapLink);
    }
    li.append(a, meta);
    return li;
  }

  function showResults(body, words) {
    const section = document.createElement("section");
    section.className = "results";
    const h2 = document.createElement("h2");
    const small = document.createElement("small");
    const total = body.timings_ms && body.timings_ms.total;
    small.textContent = `${body.results.length} items${total ? ` · ${Math.round(total)} ms` : ""}`;
    h2.append("Results ", small);
    section.appendChild(h2);
    if (body.results.length) {
      const ul = document.createElement("ul");
      ul.className = "grid";
      body.results.forEach((hit, i) => ul.appendChild(card(hit, words, i)));
      section.appendChild(ul);
    } else {
      const p = document.createElement("p");
      p.className = "empty";
      const filtered = ["category", "gender", "colour"].some((name) => form.elements[name].value);
      p.textContent = filtered ? "Nothing matched. Try fewer filters." : "Nothing matched.";
      section.appendChild(p);
    }
    resultsBody.replaceChildren(section);
  }

  async function search() {
    clearTimeout(pending);
    const words = textInput.value.trim();
    if (!source && !words) {
      showError("Draw a sketch, choose a photo or type some words first.");
      return;
    }
    const mine = ++sequence;
    if (controller) controller.abort();
    controller = new AbortController();
    showError("");
    setLoading(true);
    const data = new FormData();
    if (source === "sketch") data.append("sketch", await sketchBlob(), "sketch.png");
    else if (source === "photo" && photoInput.files[0]) data.append("photo", photoInput.files[0]);
    if (words) data.append("text", words);
    for (const name of ["category", "gender", "colour"]) {
      const value = form.elements[name].value;
      if (value) data.append(name, value);
    }
    if (mine !== sequence) return; // a newer search started while the sketch was being exported
    let message = "";
    try {
      const res = await fetch(form.dataset.apiUrl, {
        method: "POST", body: data, signal: controller.signal, credentials: "same-origin",
        headers: { Accept: "application/json", "X-CSRFToken": csrfToken() },
      });
      const body = await res.json().catch(() => null);
      if (mine !== sequence) return;
      if (res.ok && body && Array.isArray(body.results)) {
        showResults(body, words);
        if (source === "sketch") showImagined(body.generated_image, true);
        statusLine.textContent = `${body.results.length} results.`;
      } else if (body && body.error) {
        message = `Search failed: ${body.error}`;
      } else {
        message = `The server had a problem (HTTP ${res.status}). Try again in a moment.`;
      }
    } catch (err) {
      if (err.name === "AbortError" || mine !== sequence) return;
      message = "Could not reach the server. Check the connection and try again.";
    }
    if (mine !== sequence) return;
    setLoading(false);
    if (message) {
      showError(message);
      statusLine.textContent = "";
      if (!resultsBody.querySelector(".results")) {
        const p = document.createElement("p");
        p.className = "empty";
        p.textContent = "No results: the search did not run (the message under the search form says why).";
        resultsBody.replaceChildren(p);
      }
    }
  }

  redraw();
})();
