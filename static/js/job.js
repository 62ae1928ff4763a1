// Polls the job's JSON view and moves the progress bar until the job ends.
(function () {
  const box = document.getElementById("job");
  if (!box) return;
  const url = box.dataset.statusUrl;
  const $ = (id) => document.getElementById(id);
  async function poll() {
    try {
      const res = await fetch(url, { headers: { Accept: "application/json" } });
      if (res.ok) {
        const job = await res.json();
        const ended = job.status === "done" || job.status === "failed";
        $("job-status").textContent = job.status;
        $("job-status").className = `job-state ${job.status}`;
        $("job-stage").textContent = job.stage;
        $("job-stage").hidden = !job.stage || job.stage === job.status;
        $("job-bar").value = job.percent;
        $("job-count").textContent = `${job.done} / ${job.total}`;
        $("job-message").textContent = job.message || "";
        $("job-next").hidden = !ended;
        if (ended) return;
      }
    } catch (e) { /* network hiccup: try again */ }
    setTimeout(poll, 1000);
  }
  poll();
})();
