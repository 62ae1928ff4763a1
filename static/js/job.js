// Polls the job's JSON view and moves the progress bar until the job ends.
(function () {
  const box = document.getElementById("job");
  if (!box) return;
  const url = box.dataset.statusUrl;
  async function poll() {
    try {
      const res = await fetch(url, { headers: { Accept: "application/json" } });
      if (res.ok) {
        const job = await res.json();
        document.getElementById("job-status").textContent = job.status;
        document.getElementById("job-stage").textContent = job.stage;
        document.getElementById("job-bar").value = job.percent;
        document.getElementById("job-count").textContent = `${job.done} / ${job.total}`;
        document.getElementById("job-message").textContent = job.message || "";
        if (job.status === "done" || job.status === "failed") return;
      }
    } catch (e) { /* network hiccup: try again */ }
    setTimeout(poll, 1000);
  }
  poll();
})();
