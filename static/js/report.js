// The model report's embedding map: a t-SNE scatter of indexed items as an SVG, coloured by category.
// Hover (or tap) a point to see the item; click keeps it shown; legend buttons highlight one category.
(function () {
  "use strict";
  const box = document.getElementById("embedding");
  if (!box) return;
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2",
                   "#db2777", "#65a30d", "#4f46e5", "#ca8a04", "#0d9488", "#7c2d12"];
  const OTHER = "#9ca3af";
  const frame = box.querySelector(".map-frame");
  const status = document.getElementById("map-status");
  const panel = document.getElementById("map-item");
  const legend = document.getElementById("map-legend");
  // Items by their catalog id: the page's URL pattern with "_" in its place.
  const itemUrl = (id) => box.dataset.itemUrl.replace("/_/", `/${encodeURIComponent(id)}/`);
  const imageUrl = (id) => box.dataset.imageUrl.replace("/_/", `/${encodeURIComponent(id)}/`);
  let pinned = null;

  function colourOf(cat, coloured) { return cat < coloured ? PALETTE[cat % PALETTE.length] : OTHER; }

  function show(point, categories) {
    const [, , id, cat, title] = point;
    panel.replaceChildren();
    const img = document.createElement("img");
    img.src = imageUrl(id);
    img.alt = title;
    img.width = 120; img.height = 160; // twice the photo's 60x80: crisp
    const link = document.createElement("a");
    link.href = itemUrl(id);
    link.textContent = title;
    const meta = document.createElement("p");
    meta.className = "meta";
    meta.textContent = categories[cat].name;
    panel.append(img, link, meta);
  }

  function draw(data) {
    const size = 600, pad = 12;
    const svg = document.createElementNS(SVG, "svg");
    svg.setAttribute("viewBox", `0 0 ${size} ${size}`);
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `Map of ${data.points.length} indexed items in two dimensions (${data.method}), coloured by category`);
    const byPoint = new Map();
    // Grey ("other") points first so the coloured categories sit on top.
    const order = data.points.map((p, i) => i).sort((a, b) => (data.points[b][3] >= data.coloured) - (data.points[a][3] >= data.coloured));
    for (const i of order) {
      const p = data.points[i];
      const c = document.createElementNS(SVG, "circle");
      c.setAttribute("cx", (pad + p[0] * (size - 2 * pad)).toFixed(1));
      c.setAttribute("cy", (pad + (1 - p[1]) * (size - 2 * pad)).toFixed(1));
      c.setAttribute("r", "3.2");
      c.setAttribute("fill", colourOf(p[3], data.coloured));
      c.dataset.cat = p[3];
      byPoint.set(c, p);
      svg.appendChild(c);
    }
    const hover = (e) => {
      const p = byPoint.get(e.target);
      if (p && !pinned) show(p, data.categories);
    };
    svg.addEventListener("pointerover", hover);
    svg.addEventListener("click", (e) => {
      const p = byPoint.get(e.target);
      if (pinned) pinned.classList.remove("pinned");
      pinned = p ? e.target : null;
      if (p) { e.target.classList.add("pinned"); show(p, data.categories); }
    });
    frame.replaceChildren(svg);

    data.categories.forEach((cat, i) => {
      if (i > data.coloured) return;
      const li = document.createElement("li");
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("aria-pressed", "false");
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      swatch.style.background = colourOf(i, data.coloured);
      const name = i < data.coloured ? cat.name : `other (${data.categories.length - data.coloured} categories)`;
      const count = i < data.coloured ? cat.count : data.categories.slice(data.coloured).reduce((n, c) => n + c.count, 0);
      button.append(swatch, `${name} · ${count}`);
      button.addEventListener("click", () => {
        const on = button.getAttribute("aria-pressed") !== "true";
        legend.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", "false"));
        button.setAttribute("aria-pressed", String(on));
        svg.classList.toggle("focusing", on);
        for (const c of svg.children) {
          const k = Number(c.dataset.cat);
          c.classList.toggle("lit", on && (i < data.coloured ? k === i : k >= data.coloured));
        }
      });
      li.appendChild(button);
      legend.appendChild(li);
    });
  }

  fetch(box.dataset.url, { headers: { Accept: "application/json" } })
    .then(async (res) => {
      const data = await res.json().catch(() => ({ error: `The server had a problem (HTTP ${res.status}).` }));
      if (!res.ok || data.error) throw new Error(data.error || `HTTP ${res.status}`);
      draw(data);
    })
    .catch((err) => { status.textContent = `The map could not be drawn: ${err.message}`; status.className = "error"; });
})();
