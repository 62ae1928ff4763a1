// "heatmap" on a result card: show where the model looked in that item's photo, in place of the photo
// (click again for the photo). Without JavaScript the link opens the heatmap itself.
(() => {
  document.addEventListener("click", (event) => {
    const link = event.target.closest("a.heatmap-link");
    if (!link) return;
    const card = link.closest(".card");
    const img = card && card.querySelector("img");
    if (!img) return;
    event.preventDefault();
    if (!img.dataset.photo) img.dataset.photo = img.src;
    const showing = img.src === link.href;
    img.src = showing ? img.dataset.photo : link.href;
    link.classList.toggle("on", !showing);
    link.textContent = showing ? "heatmap" : "photo";
    link.setAttribute("aria-pressed", String(!showing));
  });
})();
