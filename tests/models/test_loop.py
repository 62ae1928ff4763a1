"""The one training loop: resumes after a kill mid-epoch, keeps the best epoch, refuses another config."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from models.loop import ResumeError, fit
from models.training import EpochCheckpointer

SCRIPT = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    sys.path.insert(0, {root!r})
    from tests.models.test_loop import run
    run(Path(sys.argv[1]), slow=True)
''')


def run(out: Path, slow: bool = False, epochs: int = 6, signature: dict | None = None, scores=None,
        resume: bool = True):
    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 16, gamma=0.5)  # per batch: halves every 2 epochs
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    figures = iter(scores or [])

    def step(idx, gen):
        if slow:
            time.sleep(0.05)
        return torch.nn.functional.mse_loss(model(x[idx]), y[idx])

    def evaluate():
        return {"val_score": next(figures, 0.0)}

    return model, fit("toy", model, optimizer, scheduler, out_path=out, signature=signature or {"toy": 1},
                      epochs=epochs, n_items=64, batch_size=8, seed=0, step=step, evaluate=evaluate,
                      best_key="val_score" if scores else None, show_progress=False, resume=resume)


def test_a_run_killed_mid_epoch_resumes_from_its_last_finished_epoch(tmp_path):
    out = tmp_path / "toy.pt"
    partial = EpochCheckpointer(out).partial_path
    root = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(root=root), str(out)])
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # each epoch takes ~0.4 s: wait for two, then kill within the third
            if partial.is_file() and torch.load(partial, weights_only=False)["epoch"] >= 2:
                break
            time.sleep(0.05)
        time.sleep(0.1)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        proc.kill()
    state = torch.load(partial, weights_only=False)
    done = state["epoch"]
    assert 2 <= done < 6 and not out.exists()
    _model, fitted = run(out)
    assert [h["epoch"] for h in fitted.history] == list(range(1, 7))
    assert fitted.history[:done] == state["history"]  # the finished epochs are kept, not redone


def test_the_best_epoch_is_kept(tmp_path):
    model, fitted = run(tmp_path / "toy.pt", epochs=4, scores=[0.1, 0.9, 0.3, 0.2])
    assert fitted.kept_epoch == 2 and fitted.metrics == {"val_score": 0.9}
    assert fitted.history[-1]["epoch"] == 4
    # the weights are those after epoch 2 (the same seed gives the same first two epochs), not the last ones
    after_two, _ = run(tmp_path / "two.pt", epochs=2)
    after_four, _ = run(tmp_path / "four.pt", epochs=4)
    assert torch.equal(model.weight, after_two.weight) and not torch.equal(model.weight, after_four.weight)


def test_another_config_refuses_to_resume_with_a_clear_message(tmp_path):
    out = tmp_path / "toy.pt"
    EpochCheckpointer(out).save({"toy": "other"}, epoch=1, history=[{"epoch": 1, "seconds": 0.0}])
    with pytest.raises(ResumeError, match=r"another configuration.*--restart"):
        run(out)
    _model, fitted = run(out, resume=False)  # a restart starts over
    assert len(fitted.history) == 6


def test_the_speed_probe_leaves_networks_and_optimizers_as_they_were():
    from models.loop import measure_epoch_seconds

    torch.manual_seed(0)
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.1)
    x, y = torch.randn(64, 4), torch.randn(64, 1)
    before = {k: v.clone() for k, v in model.state_dict().items()}

    def step(idx, gen):  # a GAN-like step: it runs its own optimizer
        loss = torch.nn.functional.mse_loss(model(x[idx]), y[idx])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        return loss.detach()

    seconds = measure_epoch_seconds(step, 64, 8, "cpu", {"model": model, "optimizer": optimizer},
                                    evaluate_seconds=lambda: 2.0)
    assert seconds >= 2.0
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert optimizer.state_dict()["state"] == {}
    assert all(p.grad is None for p in model.parameters())


def test_a_budget_plans_the_epochs_once_and_a_resumed_run_keeps_them(tmp_path):
    from dataclasses import asdict, replace

    from models.loop import Profile, plan_epochs

    prof = Profile("p", epochs=10, budget_seconds=60, min_epochs=2)

    def signature_of(p):
        return {"profile": asdict(p), "data": 1}

    def never():
        raise AssertionError("measured")

    assert plan_epochs("p", replace(prof, budget_seconds=None), tmp_path / "m.pt", signature_of, never)[0].epochs == 10
    planned, seconds = plan_epochs("p", prof, tmp_path / "m.pt", signature_of, lambda: 20.0, show_progress=False)
    assert (planned.epochs, seconds) == (3, 20.0)
    assert plan_epochs("p", prof, tmp_path / "m.pt", signature_of, lambda: 100.0, show_progress=False)[0].epochs == 2
    EpochCheckpointer(tmp_path / "m.pt").save(signature_of(planned), epoch=1)
    resumed, seconds = plan_epochs("p", prof, tmp_path / "m.pt", signature_of, never)
    assert (resumed.epochs, seconds) == (3, None)
    # resumed later in `make train`'s hour, when its share of it is another (search.train.share_of_hour)
    again, _ = plan_epochs("p", replace(prof, budget_seconds=25), tmp_path / "m.pt", signature_of, never)
    assert (again.epochs, again.budget_seconds) == (3, 60)
    other = {"profile": asdict(planned), "data": 2}  # another run's partial file: measured afresh
    assert plan_epochs("p", prof, tmp_path / "m.pt", lambda p: other, lambda: 30.0,
                       show_progress=False)[0].epochs == 2
