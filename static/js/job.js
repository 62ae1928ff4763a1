// Polls the job's JSON view and shows its progress until the job ends: a reindex's steps (snapshot, embedding,
// build, switch) with their counts, the images embedded, and at the end what was built.
(function () {
  const box = document.getElementById("job");
  if (!box) return;
  const url = box.dataset.statusUrl;
  const $ = (id) => document.getElementById(id);

  function showSteps(steps) {
    const list = $("job-steps");
    if (!list || !steps) return;
    list.replaceChildren(...steps.map((step) => {
      const li = document.createElement("li");
      li.className = `step ${step.state}`;
      const label = document.createElement("span");
      label.className = "step-label";
      label.textContent = step.label;
      const state = document.createElement("span");
      state.className = "visually-hidden";
      state.textContent = `(${step.state})`;
      const detail = document.createElement("span");
      detail.className = "step-detail";
      detail.textContent = step.detail;
      li.append(label, " ", state, " ", detail);
      return li;
    }));
  }

  async function poll() {
    try {
      const res = await fetch(url, { headers: { Accept: "application/json" } });
      if (res.ok) {
        const job = await res.json();
        const ended = job.status === "done" || job.status === "failed";
        $("job-status").textContent = job.status;
        $("job-status").className = `job-state ${job.status}`;
        $("job-stage").textContent = job.stage;
        $("job-stage").hidden = !!job.steps || !job.stage || job.stage === job.status;
        showSteps(job.steps);
        $("job-summary").textContent = job.summary || "";
        $("job-summary").hidden = !job.summary;
        $("job-progress").hidden = !!job.steps && !job.total;
        $("job-bar").value = job.percent;
        $("job-count").textContent = `${job.done} / ${job.total}${job.steps ? " images embedded" : ""}`;
        $("job-message").textContent = job.message || "";
        $("job-next").hidden = !ended;
        if (ended) return;
      }
    } catch (e) { /* network hiccup: try again */ }
    setTimeout(poll, 1000);
  }
  poll();
})();
